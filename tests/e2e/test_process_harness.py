"""The process harness itself: each part starts, dies by signal and comes back on its port."""

import os
import signal
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus

from domain.flow import workflow_id_for
from tests.e2e.processes import running_stack, timed_smtp_server
from tests.support import sample_checkout_data

POLICY = """
name = "later"
listen_window = "1h"
[[steps]]
delay = "1h"
action = "email"
template = "reminder"
"""
REPORT = "/ecom/v1/abandoned-checkout"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_each_part_is_a_process_that_can_be_killed_and_restarted(tmp_path: Path) -> None:
    with timed_smtp_server() as smtp:
        async with running_stack(
            tmp_path,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
            policy_toml=POLICY,
            smtp=smtp,
        ) as stack:
            pids = [p.pid for p in stack.processes]
            assert len(set(pids)) == 3 and all(_alive(pid) for pid in pids)

            async with stack.http() as http:
                first = await http.post(REPORT, json=sample_checkout_data())
                assert first.status_code == 201, first.text
                first_id = first.json()["abandonedCheckout"]["id"]
                handle = stack.client.get_workflow_handle(workflow_id_for(first_id))
                assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING

                # The API: SIGKILL, then the same port again.
                old_api = stack.api.process.pid
                assert await stack.api.kill(signal.SIGKILL) == -signal.SIGKILL
                assert not _alive(old_api)
                await stack.api.start()
                assert stack.api.process.pid != old_api
                second = await http.post(REPORT, json=sample_checkout_data())
                assert second.status_code == 201, second.text

                # The worker: SIGTERM is a graceful stop (exit code 0), then it polls again.
                old_worker = stack.worker.process.pid
                assert await stack.worker.process.terminate() == 0, stack.worker.process.logs()
                assert not _alive(old_worker)
                await stack.worker.start()
                assert stack.worker.process.starts == 2

                # Temporal: SIGKILL, then the same port and database file; flows survive.
                old_temporal = stack.temporal.process.pid
                assert await stack.temporal.kill(signal.SIGKILL) == -signal.SIGKILL
                assert not _alive(old_temporal)
                client = await stack.temporal.start()
                stack.client = client
                survived = client.get_workflow_handle(workflow_id_for(first_id))
                assert (await survived.describe()).status is WorkflowExecutionStatus.RUNNING
                third = await http.post(REPORT, json=sample_checkout_data())
                assert third.status_code == 201, third.text

            # Every start wrote its own log files.
            assert stack.api.process.log_paths(2)[1].exists()
            assert stack.temporal.process.starts == 2
            running = [p.pid for p in stack.processes]
        assert not any(_alive(pid) for pid in running), "teardown left a process running"
