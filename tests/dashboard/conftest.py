"""Headless Chromium (Debian's package) driven by Playwright, and where screenshots go."""

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.support import REPO

SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


def chromium_path() -> str:
    """The system Chromium. Missing is a failure, not a skip: `./run test` installs it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "chromium is not installed: `./run test` installs Debian's package when run as root, "
            "or run `apt-get install chromium`"
        )
    return found


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # Playwright's own browser builds are never downloaded: the system one is used.
        launched = await playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield launched
        await launched.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    name: str = request.node.name
    folder = SCREENSHOTS / name.replace("[", "-").rstrip("]")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
