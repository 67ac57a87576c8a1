"""One running engine per test module for the operator commands, and a way to run the CLI.

Commands run in-process through typer's CliRunner with environment settings pointing at the stack
(a separate `checkout-recovery` process spends seconds importing before it does anything; one test
still runs it that way). The worker runs in the test's event loop, so each command runs on a
thread of its own and the worker keeps going while the command waits.
"""

import asyncio
import contextlib
import json
import os
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from cli.main import app
from domain.checkout import AbandonedCheckout
from store.sql import SqlStore
from tests.support import BIN_DIR, REPO, RunningStack

CLI = str(BIN_DIR / "checkout-recovery")
DEEP = b"[" * 100_000 + b"]" * 100_000
"""A JSON document nested deeper than any parser's recursion allows."""


@dataclass(frozen=True)
class Run:
    """One `checkout-recovery` process the tests started, and what it answered."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"checkout-recovery {' '.join(self.args)} -> {self.code}\n{self.stderr}"


# Step 1 mails at once, step 2 makes a task a moment later, step 3 waits an hour (never in a test).
POLICY_TOML = """
name = "operator-test"
listen_window = "1h"

[[steps]]
delay = "1s"
action = "email"
template = "reminder"

[[steps]]
delay = "2s"
action = "task"
template = "follow_up"
assignee = "sales"
due_in = "1h"

[[steps]]
delay = "1h"
action = "email"
template = "last_chance"
"""


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


class OperatorStack(RunningStack):
    @property
    def env(self) -> dict[str, str]:
        """The stack's settings as a command reads them from the environment."""
        return {
            "TEMPORAL_ADDRESS": self.client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": "default",
            "CHECKOUT_RECOVERY_DATA_DIR": str(self.settings.data_dir),
            "CHECKOUT_RECOVERY_TASK_QUEUE": self.settings.task_queue,
            "CHECKOUT_RECOVERY_POLICY": self.settings.policy,
            "CHECKOUT_RECOVERY_TEMPORAL_UI_URL": "http://ui.test:8233",
            "COLUMNS": "200",  # rich wraps tables to the terminal's width; a pipe has none
        }

    async def cli(self, *args: str) -> CliResult:
        """The command run in-process on a thread of its own (it runs its own event loop), so
        that the worker in the test's loop keeps going; the settings come from `env`."""
        return await asyncio.to_thread(self._invoke, list(args))

    def _invoke(self, args: list[str]) -> CliResult:
        result = CliRunner().invoke(app, args, env=self.env)
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            # An unexpected error: show its traceback in the failing assertion.
            stderr += "".join(traceback.format_exception(result.exception))
        return CliResult(result.exit_code, result.stdout, stderr)

    async def run_process(self, *args: str) -> CliResult:
        """The installed `checkout-recovery` as a separate process (slow to start: a few s)."""
        process = await asyncio.create_subprocess_exec(
            CLI,
            *args,
            env={**os.environ, **self.env},
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode is not None
        return CliResult(process.returncode, out.decode(), err.decode())

    async def report(self, checkout: AbandonedCheckout) -> str:
        outcome = await self.service.report(checkout, self.policy)
        return outcome.checkout_id


@pytest.fixture(scope="module")
async def operators(
    dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[OperatorStack]:
    data_dir = tmp_path_factory.mktemp("operators")
    policy_file = data_dir / "policy.toml"
    policy_file.write_text(POLICY_TOML)
    client = dev_server_env.client
    async with OperatorStack.running(client, data_dir=data_dir, policy=str(policy_file)) as stack:
        yield stack


class DatabaseStack(OperatorStack):
    @property
    def env(self) -> dict[str, str]:
        # The commands use the stack's database, PostgreSQL too, not a SQLite file of their own.
        return {**super().env, "CHECKOUT_RECOVERY_DATABASE_URL": self.settings.store_url}


@contextlib.asynccontextmanager
async def database_stack(
    client: Client, store: SqlStore, database_url: str, tmp_path: Path
) -> AsyncIterator[DatabaseStack]:
    """A stack on the test's database (each kind), whose commands read that database too."""
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY_TOML)
    async with DatabaseStack.running(
        client,
        store=store,
        data_dir=tmp_path,
        policy=str(policy_file),
        database_url=database_url,
    ) as running:
        yield running


def answer_json(result: CliResult) -> Any:
    """A command's --json answer, once it succeeded."""
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)
