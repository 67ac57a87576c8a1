"""`checkout-recovery health`, the worker's readiness probe: exit 0 when Temporal, the store, the
hand-off and SMTP answer; exit 1, naming each one that does not, otherwise.

Run as an operator (or a Kubernetes exec probe) runs it: the installed command, in its own
process, with the worker's environment.
"""

import asyncio
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from service.checkouts import CheckoutService
from store.schema import flow_commands
from store.sql import SqlStore
from tests.ports import free_port
from tests.support import BIN_DIR, REPO, SmtpServer, default_policy_any_hour, sample_checkout
from workers.temporal_client import DATA_CONVERTER

CLI = BIN_DIR / "checkout-recovery"


@dataclass(frozen=True)
class Probe:
    code: int
    stdout: str
    stderr: str

    def line(self, check: str) -> str:
        [found] = [line for line in self.stdout.splitlines() if f" {check} " in f"{line} "]
        return found


async def _health(database_url: str, temporal: str, smtp_port: int) -> Probe:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CHECKOUT_", "TEMPORAL_"))},
        "TEMPORAL_ADDRESS": temporal,
        "CHECKOUT_RECOVERY_DATABASE_URL": database_url,
        "CHECKOUT_RECOVERY_SMTP_HOST": "127.0.0.1",
        "CHECKOUT_RECOVERY_SMTP_PORT": str(smtp_port),
        "CHECKOUT_RECOVERY_READINESS_BACKLOG_SECONDS": "600",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [str(CLI), "health"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Probe(done.returncode, done.stdout, done.stderr)


async def test_ready_when_temporal_the_store_and_smtp_answer(
    dev_server_env: WorkflowEnvironment, store: SqlStore, database_url: str, smtp: SmtpServer
) -> None:
    probe = await _health(database_url, _address(dev_server_env), smtp.port)
    assert probe.code == 0, probe
    for check in ("temporal", "store", "handoff_backlog", "smtp"):
        assert probe.line(check).startswith("ok"), probe
    assert probe.stderr == "", probe


async def test_each_dependency_that_fails_is_named(
    store: SqlStore, database_url: str, dev_server_env: WorkflowEnvironment
) -> None:
    dead_temporal = f"127.0.0.1:{free_port()}"
    dead_smtp = free_port()
    probe = await _health(database_url, dead_temporal, dead_smtp)
    assert probe.code == 1, probe
    assert probe.line("temporal").startswith("FAIL"), probe
    assert probe.line("smtp").startswith("FAIL"), probe
    assert probe.line("store").startswith("ok"), probe
    assert "not ready: temporal, smtp failed" in probe.stderr, probe

    # A command that has waited an hour for Temporal: the hand-off is stuck.
    away = await Client.connect(dead_temporal, lazy=True, data_converter=DATA_CONVERTER)
    await CheckoutService(away, store, "health-test").report(
        sample_checkout(), default_policy_any_hour()
    )
    async with store.engine.begin() as conn:
        await conn.execute(
            update(flow_commands).values(created_date=datetime.now(UTC) - timedelta(hours=1))
        )
    stuck = await _health(database_url, _address(dev_server_env), dead_smtp)
    assert stuck.code == 1, stuck
    assert stuck.line("handoff_backlog").startswith("FAIL"), stuck
    assert re.search(
        r"FAIL +handoff_backlog +oldest of 1 command\(s\) has waited 36\d\ds \(more than 600s\)",
        stuck.line("handoff_backlog"),
    ), stuck
    assert stuck.line("temporal").startswith("ok"), stuck


def _address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host
