"""A newcomer's first run: `dev`, then the banner's or the README's commands, in either order.

`checkout-recovery dev` runs as its own process on free ports with no policy named anywhere, as
the quick start runs it. The test takes the commands from what the banner printed and from the
README's quick start, runs them as printed, and waits for the first email in the dev stack's
Maildir: within a minute, whichever command came first.
"""

import asyncio
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import CLI, PartProcess, clean_environment
from tests.ports import free_port
from tests.support import REPO

FIRST_EMAIL_WITHIN_SECONDS = 60


def _dev_env(data_dir: Path) -> dict[str, str]:
    # No setting the shell may carry: the newcomer's `dev` names no policy, no address.
    env = clean_environment()
    api_port = free_port()
    env.update(
        {
            "CHECKOUT_RECOVERY_DATA_DIR": str(data_dir),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "CHECKOUT_RECOVERY_TEMPORAL_UI_URL": f"http://localhost:{free_port()}",
            "CHECKOUT_RECOVERY_SMTP_PORT": str(free_port()),
            "CHECKOUT_RECOVERY_API_PORT": str(api_port),
            "CHECKOUT_RECOVERY_PUBLIC_URL": f"http://localhost:{api_port}",
            "CHECKOUT_RECOVERY_WORKER_METRICS_ADDRESS": "",
        }
    )
    return env


async def _banner(dev: PartProcess) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = dev.output()
        if "Try it" in text and "recover ID" in text:
            return text
        if not dev.running:
            raise AssertionError(dev.exited_message())
        await asyncio.sleep(0.2)
    raise AssertionError(f"no banner from dev:\n{dev.logs()}")


def _readme_start_command() -> list[str]:
    """The quick start's `start` command, run with the installed entry point as `./run cli` does."""
    readme = (REPO / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("./run cli start "))
    words = shlex.split(line.split("#", 1)[0])
    assert words[:2] == ["./run", "cli"]
    return [str(CLI), *words[2:]]


async def _curl_from_banner(banner: str) -> httpx.Response:
    """The banner's curl command, made as printed: its headers, its body file and its URL."""
    command = banner[banner.index("curl ") :].split("\n  ./run", 1)[0]
    joined = command.replace("\\\n", " ")
    words = shlex.split(joined)
    assert words[0] == "curl"
    headers: dict[str, str] = {}
    body: bytes | None = None
    url = ""
    iterator = iter(words[1:])
    for word in iterator:
        if word == "-H":
            name, _, value = next(iterator).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            source = next(iterator)
            assert source.startswith("@")
            body = (REPO / source[1:]).read_bytes()
        else:
            url = word
    assert body is not None and url
    async with httpx.AsyncClient() as client:
        return await client.post(url, content=body, headers=headers)


def _emails(data_dir: Path) -> list[Path]:
    return [p for sub in ("new", "cur") for p in (data_dir / "mail" / sub).glob("*")]


async def _first_email(data_dir: Path, started: float) -> float:
    while time.monotonic() - started < FIRST_EMAIL_WITHIN_SECONDS:
        if _emails(data_dir):
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise AssertionError(f"no email within {FIRST_EMAIL_WITHIN_SECONDS} s")


@pytest.mark.parametrize("first", ["banner", "readme"])
async def test_the_first_email_arrives_within_a_minute_in_either_order(
    first: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    env = _dev_env(data_dir)
    dev = PartProcess("dev", [str(CLI), "dev"], env, tmp_path / "logs")
    dev.start()
    try:
        banner = await _banner(dev)
        assert "Policy            demo (dev's default" in banner
        assert "the first email arrives within 15 seconds" in banner

        async def from_banner() -> str:
            answer = await _curl_from_banner(banner)
            assert answer.status_code in (200, 201), answer.text
            return str(answer.json()["abandonedCheckout"]["id"])

        def from_readme() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                _readme_start_command(),
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
            )

        started = time.monotonic()
        if first == "banner":
            checkout_id = await from_banner()
            second = await asyncio.to_thread(from_readme)
            assert second.returncode == 0, second.stderr
            assert second.stdout.strip() == checkout_id
            assert "already reported" in second.stderr
        else:
            run = await asyncio.to_thread(from_readme)
            assert run.returncode == 0, run.stderr
            assert "policy: demo (the running engine's" in run.stderr
            checkout_id = run.stdout.strip()
            assert await from_banner() == checkout_id
        seconds = await _first_email(data_dir, started)
        print(f"first run ({first} first): first email after {seconds:.1f} s")
        assert re.fullmatch(r"[0-9a-f-]{36}", checkout_id)
    finally:
        await dev.kill(signal.SIGTERM, timeout=30)
        dev.close()
