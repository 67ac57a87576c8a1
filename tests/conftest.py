import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from store.sql import SqlStore
from tests.postgres import PostgresServer, postgres_server
from tests.support import SmtpServer, smtp_server, start_dev_server, start_time_skipping

# The engine processes the tests start inherit this environment. Their metrics listeners default
# to fixed ports, which two processes of one test (or a local `./run dev`) would both want; the
# tests of metrics set their own free ports.
for _listener in (
    "CHECKOUT_RECOVERY_WORKER_METRICS_ADDRESS",
    "CHECKOUT_RECOVERY_API_METRICS_ADDRESS",
):
    os.environ.setdefault(_listener, "")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session, started by the first test that needs it."""
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind the store supports (no schema yet)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    sql_store = SqlStore.from_url(database_url)
    await sql_store.create_schema()
    yield sql_store
    await sql_store.close()


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping test server per test: its clock is the test's alone."""
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A command run in-process (typer's CliRunner) may configure logging onto a stream that the
    runner closes when it returns; later tests would then log into that closed stream. Every test
    starts from the logging it found."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
