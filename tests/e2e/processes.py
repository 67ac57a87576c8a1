"""The engine's parts as separate OS processes, for fault tests: kill one, restart it, look inside.

Each part (the Temporal dev server, `checkout-recovery api`, `checkout-recovery worker`) runs as
its own process started with `subprocess.Popen`, with its own pid, and can be signalled (SIGKILL,
SIGTERM) and started again with the same command, ports and files. stdout and stderr of every
start go to files under the test's log folder, so a failing test can show them.

Nothing is ever stopped by name: only the pid this harness started. Each start also gets a small
watchdog shell that SIGKILLs that pid if the test process dies without cleaning up (its stdin, a
pipe from us, reaches end-of-file then), as tests/postgres.py does for PostgreSQL; a normal stop
disarms the watchdog first, so it never signals a pid that might have been reused.
"""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import IO, Any

import httpx
from aiosmtpd.controller import Controller
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.ports import free_port
from tests.support import BIN_DIR, REPO, RecordingSmtpHandler
from workers.search_attributes import dev_server_flags

CLI = BIN_DIR / "checkout-recovery"
TEMPORAL_CLI = BIN_DIR / "temporal"
LOG_TAIL_LINES = 120

# Disarmed by the line "stop"; anything else (end-of-file above all) kills the watched pid.
_WATCHDOG = 'read line; [ "$line" = stop ] || kill -KILL "$0" 2>/dev/null'


class PartProcess:
    """One part of the engine as an OS process that can be killed and started again."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_dir = log_dir
        self.starts = 0
        self.exit_codes: list[int] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._files: list[IO[bytes]] = []

    # --- state ---------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self._process is not None, f"{self.name} was never started"
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def log_paths(self, start: int | None = None) -> list[Path]:
        """stdout and stderr of one start (1-based; default: the current one)."""
        number = start or self.starts
        return [self.log_dir / f"{self.name}.{number}.{stream}" for stream in ("stdout", "stderr")]

    def output(self, start: int | None = None) -> str:
        """What the process wrote so far in one start, stdout then stderr."""
        return "".join(
            path.read_text(errors="replace") for path in self.log_paths(start) if path.exists()
        )

    def logs(self, tail: int | None = LOG_TAIL_LINES) -> str:
        """Every start's stdout and stderr (their last `tail` lines each), with headers."""
        parts: list[str] = []
        for number in range(1, self.starts + 1):
            for path in self.log_paths(number):
                text = path.read_text(errors="replace") if path.exists() else ""
                lines = text.splitlines()
                cut = tail is not None and len(lines) > tail
                shown = lines[-tail:] if tail is not None else lines
                header = f"----- {path}" + (f" (last {tail} of {len(lines)} lines)" if cut else "")
                parts.append("\n".join([header, *shown]))
        return "\n".join(parts) if parts else f"----- {self.name}: never started"

    # --- control -------------------------------------------------------------------------

    def start(self) -> int:
        """Start the command (again); returns the new pid."""
        if self.running:
            raise RuntimeError(f"{self.name} is running already (pid {self.pid})")
        self._disarm_watchdog()
        self._close_files()
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stdout_path, stderr_path = self.log_paths()
        stdout, stderr = stdout_path.open("wb"), stderr_path.open("wb")
        self._files = [stdout, stderr]
        self._process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            # Its own session: a Ctrl-C meant for pytest must not reach it before the teardown.
            start_new_session=True,
        )
        self._watchdog = subprocess.Popen(
            ["/bin/sh", "-c", _WATCHDOG, str(self._process.pid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self._process.pid

    async def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int:
        """Send `sig` to this process's own pid and wait for it to exit; returns its exit code.

        A process that does not exit within `timeout` (after a SIGTERM, say) is then SIGKILLed.
        """
        process = self._process
        assert process is not None, f"{self.name} was never started"
        self._disarm_watchdog()
        if process.poll() is None:
            process.send_signal(sig)
            try:
                await asyncio.to_thread(process.wait, timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 10)
        code = process.returncode
        self.exit_codes.append(code)
        return code

    async def terminate(self, timeout: float = 30.0) -> int:
        return await self.kill(signal.SIGTERM, timeout)

    def close(self) -> None:
        """Teardown: SIGKILL the process if it still runs, reap it, close its log files."""
        process = self._process
        self._disarm_watchdog()
        if process is not None and process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self._close_files()

    def _disarm_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        assert watchdog.stdin is not None
        with contextlib.suppress(OSError):
            watchdog.stdin.write(b"stop\n")
            watchdog.stdin.close()
        try:
            watchdog.wait(timeout=5)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait(timeout=5)

    def _close_files(self) -> None:
        for file in self._files:
            file.close()
        self._files = []

    def exited_message(self) -> str:
        return f"{self.name} (pid {self.pid}) exited with code {self.returncode}\n{self.logs()}"


def clean_environment() -> dict[str, str]:
    """This process's environment without any engine or Temporal setting a shell may carry."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CHECKOUT_RECOVERY_", "TEMPORAL_"))
    }


async def _deadline_loop(timeout: float) -> AsyncIterator[float]:
    """Yields the time left, every call, until `timeout` seconds have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        yield left


# --- the Temporal dev server ----------------------------------------------------------------


class TemporalServer:
    """`temporal server start-dev` on fixed ports and one SQLite file, so that a restart after a
    kill finds every flow, timer and task queue where it was."""

    def __init__(self, log_dir: Path, db_file: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.db_file = db_file
        command = [
            str(TEMPORAL_CLI),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            # Fixed too, so that a restart cannot collide with a port picked meanwhile.
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--db-filename",
            str(db_file),
            "--namespace",
            "default",
            "--log-level",
            "error",
            *dev_server_flags(),
        ]
        self.process = PartProcess("temporal", command, clean_environment(), log_dir)

    async def start(self, timeout: float = 60.0) -> Client:
        """Start the server (again) and wait until it serves the default namespace."""
        self.process.start()
        return await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = 60.0) -> Client:
        error: BaseException | None = None
        async for _ in _deadline_loop(timeout):
            if not self.process.running:
                raise RuntimeError(f"the Temporal dev server exited\n{self.process.logs()}")
            try:
                client = await connect_temporal(self.address)
                await client.service_client.check_health()
                await client.workflow_service.describe_namespace(
                    DescribeNamespaceRequest(namespace="default")
                )
                return client
            except Exception as err:
                error = err
                await asyncio.sleep(0.3)
        raise RuntimeError(
            f"the Temporal dev server on {self.address} was not ready within {timeout}s "
            f"({error!r})\n{self.process.logs()}"
        )

    async def kill(self, sig: int = signal.SIGKILL) -> int:
        return await self.process.kill(sig)

    async def restart(self, sig: int = signal.SIGKILL, timeout: float = 60.0) -> Client:
        if self.process.running:
            await self.kill(sig)
        return await self.start(timeout)


async def connect_temporal(address: str) -> Client:
    return await Client.connect(
        address, namespace="default", data_converter=pydantic_data_converter
    )


# --- the engine's processes -------------------------------------------------------------------


@dataclass
class EngineConfig:
    """The settings every engine process of one test shares (see workers/settings.py)."""

    temporal_address: str
    database_url: str
    data_dir: Path
    policy_file: Path
    smtp_port: int
    api_port: int = field(default_factory=free_port)
    task_queue: str = field(default_factory=lambda: f"e2e-{uuid.uuid4()}")
    link_signing_secret: str = field(default_factory=lambda: f"e2e-secret-{uuid.uuid4()}")
    mail_from: str = "Test Shop <recovery@shop.test>"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        return {
            **clean_environment(),
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "CHECKOUT_RECOVERY_DATA_DIR": str(self.data_dir),
            "CHECKOUT_RECOVERY_DATABASE_URL": self.database_url,
            "CHECKOUT_RECOVERY_POLICY": str(self.policy_file),
            "CHECKOUT_RECOVERY_TASK_QUEUE": self.task_queue,
            "CHECKOUT_RECOVERY_API_HOST": "127.0.0.1",
            "CHECKOUT_RECOVERY_API_PORT": str(self.api_port),
            "CHECKOUT_RECOVERY_PUBLIC_URL": self.api_url,
            "CHECKOUT_RECOVERY_LINK_SIGNING_SECRET": self.link_signing_secret,
            "CHECKOUT_RECOVERY_SMTP_HOST": "127.0.0.1",
            "CHECKOUT_RECOVERY_SMTP_PORT": str(self.smtp_port),
            "CHECKOUT_RECOVERY_MAIL_FROM": self.mail_from,
            "CHECKOUT_RECOVERY_SHOP_NAME": "Test Shop",
            "CHECKOUT_RECOVERY_SHUTDOWN_GRACE_SECONDS": "2",
            "CHECKOUT_RECOVERY_HANDOFF_INTERVAL_SECONDS": "1",
            # No metrics listeners unless a test asks (extra): several parts, and several
            # tests at once, would otherwise all want the default ports.
            "CHECKOUT_RECOVERY_WORKER_METRICS_ADDRESS": "",
            "CHECKOUT_RECOVERY_API_METRICS_ADDRESS": "",
            **self.extra,
        }


class ApiProcess:
    """`checkout-recovery api`; ready once GET /healthz answers 200 on its port."""

    def __init__(self, config: EngineConfig, log_dir: Path) -> None:
        self.config = config
        command = [str(CLI), "api", "--policy", str(config.policy_file)]
        self.process = PartProcess("api", command, config.env(), log_dir)

    async def start(self, timeout: float = 60.0) -> None:
        self.process.start()
        await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        async with httpx.AsyncClient(base_url=self.config.api_url, timeout=2.0) as http:
            async for _ in _deadline_loop(timeout):
                if not self.process.running:
                    raise RuntimeError(self.process.exited_message())
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(
            f"the API did not answer /healthz within {timeout}s\n{self.process.logs()}"
        )

    async def kill(self, sig: int = signal.SIGKILL) -> int:
        return await self.process.kill(sig)

    async def restart(self, sig: int = signal.SIGKILL, timeout: float = 60.0) -> None:
        if self.process.running:
            await self.kill(sig)
        await self.start(timeout)


WORKER_READY_LINE = "Worker polling"


class WorkerProcess:
    """`checkout-recovery worker`; ready once it logs that it polls its task queue."""

    def __init__(self, config: EngineConfig, log_dir: Path) -> None:
        self.config = config
        command = [str(CLI), "worker", "--policy", str(config.policy_file)]
        self.process = PartProcess("worker", command, config.env(), log_dir)

    async def start(self, timeout: float = 60.0) -> None:
        self.process.start()
        async for _ in _deadline_loop(timeout):
            if not self.process.running:
                raise RuntimeError(self.process.exited_message())
            if WORKER_READY_LINE in self.process.output():
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(
            f"the worker did not start polling within {timeout}s\n{self.process.logs()}"
        )

    async def kill(self, sig: int = signal.SIGKILL) -> int:
        return await self.process.kill(sig)

    async def restart(self, sig: int = signal.SIGKILL, timeout: float = 60.0) -> None:
        if self.process.running:
            await self.kill(sig)
        await self.start(timeout)


async def create_api_key(config: EngineConfig) -> str:
    """A manage + read key, made as an operator makes one: `checkout-recovery keys create`.

    It also brings the database to the newest schema before any long-running part starts.
    """
    command = [
        str(CLI),
        "keys",
        "create",
        "--scope",
        "abandoned-checkouts:manage",
        "--scope",
        "abandoned-checkouts:read",
        "--name",
        "e2e",
        "--json",
    ]
    result = await asyncio.to_thread(
        subprocess.run,
        command,
        env=config.env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"keys create failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    token = json.loads(result.stdout)["token"]
    assert isinstance(token, str)
    return token


# --- the SMTP server -------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    received_at: datetime
    """The test's own clock when the server accepted the message."""
    message: EmailMessage

    @property
    def recipient(self) -> str:
        return parseaddr(str(self.message["To"]))[1].lower()

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class TimedSmtpHandler(RecordingSmtpHandler):
    """The tests' recording SMTP handler, also noting when each message arrived."""

    arrivals: list[Arrival] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if answer.startswith("250"):
            # No await since the parent appended it: this is the message just accepted.
            self.arrivals.append(Arrival(datetime.now(UTC), self.messages[-1]))
        return answer

    def arrivals_for(self, address: str) -> list[Arrival]:
        return [a for a in self.arrivals if a.recipient == address.lower()]


@dataclass
class TimedSmtpServer:
    handler: TimedSmtpHandler
    port: int


@contextlib.contextmanager
def timed_smtp_server() -> Iterator[TimedSmtpServer]:
    """A real SMTP server on loopback, in this process (its own thread)."""
    handler = TimedSmtpHandler(lock=threading.Lock())
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield TimedSmtpServer(handler, port)
    finally:
        controller.stop()


# --- the whole stack -----------------------------------------------------------------------------


@dataclass
class Stack:
    """Temporal, API and worker as three processes, plus what a test needs to talk to them."""

    temporal: TemporalServer
    api: ApiProcess
    worker: WorkerProcess
    config: EngineConfig
    api_key: str
    client: Client
    """A Temporal client of the test's own; connect a new one after restarting Temporal."""
    smtp: TimedSmtpServer | None = None

    @property
    def processes(self) -> list[PartProcess]:
        return [self.temporal.process, self.api.process, self.worker.process]

    def http(self, timeout: float = 60.0, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.config.api_url,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=timeout,
            **kwargs,
        )

    def logs(self) -> str:
        return "\n".join(process.logs() for process in self.processes)

    async def reconnect(self) -> Client:
        self.client = await self.temporal.wait_ready()
        return self.client


@contextlib.asynccontextmanager
async def running_stack(
    tmp_path: Path,
    *,
    database_url: str,
    policy_toml: str,
    smtp: TimedSmtpServer,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """Start Temporal, make an API key, start the API and a worker; kill all three at the end.

    The processes' logs are printed at teardown: pytest shows them only for a failing test.
    """
    log_dir = tmp_path / "logs"
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(policy_toml)
    temporal = TemporalServer(log_dir, tmp_path / "temporal.db")
    config = EngineConfig(
        temporal_address=temporal.address,
        database_url=database_url,
        data_dir=data_dir,
        policy_file=policy_file,
        smtp_port=smtp.port,
        extra=extra_env or {},
    )
    api = ApiProcess(config, log_dir)
    worker = WorkerProcess(config, log_dir)
    try:
        client = await temporal.start()
        api_key = await create_api_key(config)
        await asyncio.gather(api.start(), worker.start())
        yield Stack(temporal, api, worker, config, api_key, client, smtp)
    finally:
        for part in (api.process, worker.process, temporal.process):
            part.close()
        print(f"\n===== process logs (folder {log_dir}) =====")
        for part in (temporal.process, api.process, worker.process):
            print(part.logs())
