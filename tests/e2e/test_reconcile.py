"""The hand-off and the reconciler against a real Temporal dev server: a report while Temporal
cannot be reached is kept and started later; the reconciler finds and repairs what disagrees."""

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from domain.checkout import FlowState, StopReason
from domain.flow import RECOVERED_SIGNAL, workflow_id_for
from service.checkouts import CheckoutService
from service.handoff import GRACE, Handoff
from service.reconciler import Reconciler
from store.sql import SqlStore
from tests.ports import free_port
from tests.support import default_policy_any_hour, eventually, sample_checkout
from workers.temporal_client import DATA_CONVERTER

POLICY = default_policy_any_hour()
CLI = str(Path(sys.executable).parent / "checkout-recovery")


def _checkout(name: str, **changes: object):
    # Unique per run: the dev server is shared by the whole session, and by both stores.
    # Each its own buyer: a recovery stops the buyer's other flows.
    unique = f"{name}-{uuid.uuid4().hex[:8]}"
    buyer = {"email": f"{unique}@example.com", "visitorId": unique}
    return sample_checkout(checkoutId=unique, buyerInfo=buyer).model_copy(update=changes)


async def _status(client: Client, checkout_id: str) -> WorkflowExecutionStatus | None:
    try:
        described = await client.get_workflow_handle(workflow_id_for(checkout_id)).describe()
    except RPCError:
        return None
    return described.status


async def test_a_report_while_temporal_is_unreachable_is_kept_and_started_later(
    dev_server_env: WorkflowEnvironment, store: SqlStore
):
    nowhere = await Client.connect(
        f"127.0.0.1:{free_port()}", lazy=True, data_converter=DATA_CONVERTER
    )
    task_queue = "handoff-unreachable"
    down = CheckoutService(nowhere, store, task_queue)

    checkout = _checkout("down-1")
    outcome = await down.report(checkout, POLICY)
    again = await down.report(checkout, POLICY)
    recovered = await down.recover(outcome.checkout_id, order_id="o-1")

    assert outcome.new and outcome.flow_state is FlowState.PENDING
    assert not again.new
    assert recovered.flow_state is FlowState.PENDING
    pending = await store.commands.pending(checkout_ids=[outcome.checkout_id])
    assert [c.name for c in pending] == ["AbandonedCheckoutWorkflow", RECOVERED_SIGNAL]
    assert all(c.attempts >= 1 for c in pending[:1])

    # Temporal is back: the workers' hand-off delivers both, in order.
    client = dev_server_env.client
    handoff = Handoff(client, store.commands, task_queue)
    await eventually(
        lambda: _delivered(handoff, store, outcome.checkout_id),
        timeout=GRACE.total_seconds() + 10,
        what="the hand-off to deliver",
    )
    handle = client.get_workflow_handle(workflow_id_for(outcome.checkout_id))
    history = [e async for e in handle.fetch_history_events()]
    names = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in history
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert names == [RECOVERED_SIGNAL]
    record = await store.get(outcome.checkout_id)
    assert record is not None and record.flow_state is FlowState.STARTED


async def _delivered(handoff: Handoff, store: SqlStore, checkout_id: str) -> bool:
    await handoff.deliver_pending()
    return not await store.commands.pending(checkout_ids=[checkout_id])


async def test_the_reconciler_repairs_what_the_store_and_temporal_disagree_on(
    dev_server_env: WorkflowEnvironment, store: SqlStore
):
    client = dev_server_env.client
    task_queue = f"reconcile-{datetime.now(UTC).timestamp()}"
    service = CheckoutService(client, store, task_queue)
    now = datetime.now(UTC)

    # A checkout stored without any flow or command (as before the hand-off existed).
    orphan = _checkout("orphan-1")
    orphan = orphan.model_copy(update={"id": orphan.checkout_id, "created_date": now})
    await store.save_reported(orphan, now)
    # The same, but abandoned so long ago that its policy's window has passed.
    long_ago = now - timedelta(days=30)
    expired = _checkout("orphan-2")
    expired = expired.model_copy(update={"id": expired.checkout_id, "created_date": long_ago})
    await store.save_reported(expired, now)
    # A flow running although the store says recovered (the signal never got there).
    running = await service.report(_checkout("running-1"), POLICY)
    assert running.flow_state is FlowState.STARTED
    assert await store.mark_recovered(running.checkout_id, now, "o-7", signal_flow=False)

    reconciler = Reconciler(client, store, service.handoff, POLICY, settle=timedelta(0))

    async def listed() -> bool:  # visibility lags a little behind the start
        return running.checkout_id in await reconciler._running_flows()

    await eventually(listed, timeout=20, what="the running flow to be listed")

    dry = await reconciler.reconcile(dry_run=True)
    found = {(f.checkout_id, f.problem, f.action) for f in dry.findings}
    assert {
        (orphan.id or "", "flow_missing", "would start"),
        (expired.id, "flow_missing", "would close"),
        (running.checkout_id, "flow_running_after_recovered", "would tell"),
    } <= found
    assert await _status(client, orphan.id) is None  # a dry run changes nothing

    report = await reconciler.reconcile()
    done = {(f.checkout_id, f.problem, f.action) for f in report.findings}
    assert {
        (orphan.id or "", "flow_missing", "started"),
        (expired.id, "flow_missing", "closed"),
        (running.checkout_id, "flow_running_after_recovered", "told"),
    } <= done
    assert await _status(client, orphan.id) is WorkflowExecutionStatus.RUNNING
    closed = await store.get(expired.id)
    assert closed is not None and closed.stop_reason is StopReason.WINDOW_ELAPSED
    handle = client.get_workflow_handle(workflow_id_for(running.checkout_id))
    signals = [
        e.workflow_execution_signaled_event_attributes.signal_name
        async for e in handle.fetch_history_events()
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert signals == [RECOVERED_SIGNAL]

    # Repaired: a second round finds none of them again.
    second = await reconciler.reconcile()
    assert not {f.checkout_id for f in second.findings} & {orphan.id, expired.id}


async def test_checkouts_reconcile_command_prints_what_it_found(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
):
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_server_env.client.service_client.config.target_host,
        "CHECKOUT_RECOVERY_DATA_DIR": str(tmp_path),
        "CHECKOUT_RECOVERY_TASK_QUEUE": "reconcile-cli",
    }
    store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await store.create_schema()
    old = datetime.now(UTC) - timedelta(minutes=5)  # settled: older than the minute left alone
    try:
        orphan = _checkout("cli-orphan")
        orphan = orphan.model_copy(update={"id": orphan.checkout_id, "created_date": old})
        await store.save_reported(orphan, old)
    finally:
        await store.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, "checkouts", "reconcile", *args], env=env, capture_output=True, text=True
        )

    dry = cli("--dry-run", "--json")
    real = cli("--json")
    text = cli()

    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["findings"] == [
        {
            "checkout_id": orphan.id,
            "problem": "flow_missing",
            "action": "would start",
            "detail": "policy default",
        }
    ]
    assert real.returncode == 0, real.stderr
    assert [f["action"] for f in json.loads(real.stdout)["findings"]] == ["started"]
    assert text.returncode == 0, text.stderr
    assert "0 problem(s)" in text.stdout
    assert await _status(dev_server_env.client, orphan.id or "") is WorkflowExecutionStatus.RUNNING
