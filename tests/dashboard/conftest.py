"""Headless Chromium (Debian's package) driven by Playwright, where screenshots go, and the
running dashboard with a browser context on it (a module may give `dashboard` another stack)."""

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright
from temporalio.testing import WorkflowEnvironment

from store.sql import SqlStore
from tests.dashboard.stack import DashboardStack, dashboard_stack
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


@pytest.fixture
async def dashboard(
    dev_server_env: WorkflowEnvironment, store: SqlStore, tmp_path: Path
) -> AsyncIterator[DashboardStack]:
    async with dashboard_stack(dev_server_env.client, store, tmp_path) as running:
        yield running


@pytest.fixture
async def context(browser: Browser, dashboard: DashboardStack) -> AsyncIterator[BrowserContext]:
    opened = await browser.new_context(base_url=dashboard.base_url)
    yield opened
    await opened.close()
