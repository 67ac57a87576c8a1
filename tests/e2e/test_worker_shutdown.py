"""`checkout-recovery worker` as a process: SIGTERM lets the email in flight finish."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from domain.activity import ActivityType
from service.checkouts import CheckoutService
from store.sql import SqlStore
from tests.support import SmtpServer, eventually, sample_checkout
from workers.policy_files import load_policy

CLI = str(Path(sys.executable).parent / "checkout-recovery")
POLICY = """
name = "at-once"
listen_window = "0s"
[[steps]]
delay = "0s"
action = "email"
template = "reminder"
"""


async def test_sigterm_lets_the_running_send_finish(
    dev_server_env: WorkflowEnvironment, smtp: SmtpServer, tmp_path: Path
) -> None:
    policy_file = tmp_path / "at-once.toml"
    policy_file.write_text(POLICY)
    task_queue = "shutdown-test"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_server_env.client.service_client.config.target_host,
        "CHECKOUT_RECOVERY_DATA_DIR": str(tmp_path),
        "CHECKOUT_RECOVERY_TASK_QUEUE": task_queue,
        "CHECKOUT_RECOVERY_SMTP_PORT": str(smtp.port),
        "CHECKOUT_RECOVERY_POLICY": str(policy_file),
    }
    smtp.handler.data_delay = 3.0
    worker = subprocess.Popen([CLI, "worker"], env=env, stderr=subprocess.PIPE, text=True)
    store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await store.create_schema()
    try:
        service = CheckoutService(dev_server_env.client, store, task_queue)
        outcome = await service.report(sample_checkout(), load_policy(str(policy_file)))

        async def send_in_flight() -> bool:
            return smtp.handler.data_started > 0

        await eventually(send_in_flight, timeout=30, what="the email to reach DATA")
        worker.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(worker.wait, 30)
        log = worker.stderr.read() if worker.stderr else ""
        record = await store.get(outcome.checkout_id)
    finally:
        worker.kill()
        await store.close()

    assert exit_code == 0, log
    assert "Stopping worker: letting running activities finish" in log
    assert "Worker stopped" in log
    assert len(smtp.handler.messages) == 1
    assert record is not None
    assert [a.type for a in record.activities] == [ActivityType.SCHEDULED, ActivityType.EMAIL_SENT]
