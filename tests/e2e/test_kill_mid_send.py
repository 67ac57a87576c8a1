"""A worker SIGKILLed in the middle of two SMTP conversations, and what each buyer gets.

Two real worker processes, the session's Temporal dev server, a SQLite store and a relay that
speaks SMTP line by line (tests/smtp_wire.py), so the test can hold each conversation at an exact
point while it kills the worker that holds them:

- Ada's at DATA, before the relay's 354: nothing claimed yet, so once the attempt's heartbeat
  is missed the other worker sends it, and she gets it once;
- Bob's after the final dot, before the relay's answer: the relay has it, the claim is made, so
  the retry must not send it again; he gets it once, and his entry says delivery_unconfirmed.
"""

import asyncio
import signal
import uuid
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from domain.activity import ActivityType, NotSentReason
from domain.flow import workflow_id_for
from domain.steps import SEND_HEARTBEAT_TIMEOUT
from service.checkouts import CheckoutService
from store.sql import SqlStore
from tests.e2e.processes import EngineConfig, WorkerProcess
from tests.smtp_wire import Transaction, wire_relay
from tests.support import eventually, sample_checkout
from workers.policy_files import load_policy
from workflows.abandoned_checkout import STEP_TIMEOUT

POLICY = """
name = "at-once"
listen_window = "0s"
[[steps]]
delay = "0s"
action = "email"
template = "reminder"
"""
ADA, BOB = "ada@example.com", "bob@example.com"


async def test_a_worker_killed_mid_send_leaves_each_buyer_one_email(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    held = {ADA: asyncio.Event(), BOB: asyncio.Event()}
    release = asyncio.Event()

    async def hold_ada_at_data(transaction: Transaction) -> bytes | None:
        if transaction.recipient == ADA and not held[ADA].is_set():
            held[ADA].set()
            await release.wait()
            return None
        return b"354 go ahead"

    async def hold_bob_after_the_end(transaction: Transaction) -> bytes | None:
        if transaction.recipient == BOB and not held[BOB].is_set():
            held[BOB].set()
            await release.wait()
            return None
        return b"250 2.0.0 queued"

    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY)
    async with wire_relay() as relay:
        relay.on_data, relay.on_end = hold_ada_at_data, hold_bob_after_the_end
        config = EngineConfig(
            temporal_address=dev_server_env.client.service_client.config.target_host,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
            data_dir=tmp_path / "data",
            policy_file=policy_file,
            smtp_port=relay.port,
        )
        doomed = WorkerProcess(config, tmp_path / "logs" / "worker-1")
        survivor = WorkerProcess(config, tmp_path / "logs" / "worker-2")
        store = SqlStore.from_url(config.database_url)
        try:
            await doomed.start()  # it migrates the store first
            service = CheckoutService(dev_server_env.client, store, config.task_queue)
            policy = load_policy(str(policy_file))
            ids = {}
            for email in (ADA, BOB):
                checkout = sample_checkout(
                    checkoutId=f"kill-{uuid.uuid4()}",
                    buyerInfo={"email": email, "visitorId": f"visitor-{email}"},
                )
                ids[email] = (await service.report(checkout, policy)).checkout_id
            await asyncio.wait_for(asyncio.gather(held[ADA].wait(), held[BOB].wait()), timeout=60)
            assert await doomed.kill(signal.SIGKILL) == -signal.SIGKILL
            release.set()
            await survivor.start()

            async def settled() -> bool:
                for checkout_id in ids.values():
                    record = await store.get(checkout_id)
                    if record is None or len(record.activities) < 2:
                        return False
                return True

            # The killed attempts are noticed by their missing heartbeat, well before their
            # own timeout (STEP_TIMEOUT) would end them.
            await eventually(
                settled, timeout=STEP_TIMEOUT.total_seconds() - 5, what="both steps recorded"
            )
            entries = {}
            for email, checkout_id in ids.items():
                record = await store.get(checkout_id)
                assert record is not None
                entries[email] = [(a.type, a.reason) for a in record.activities]
        finally:
            for worker in (doomed, survivor):
                worker.process.close()
            await store.close()
            for worker in (doomed, survivor):
                print(worker.process.logs())

    assert entries[ADA][-1] == (ActivityType.EMAIL_SENT, None), entries[ADA]
    assert entries[BOB][-1] == (
        ActivityType.EMAIL_NOT_SENT,
        NotSentReason.DELIVERY_UNCONFIRMED,
    ), entries[BOB]
    assert [len(relay.to(ADA)), len(relay.to(BOB))] == [1, 1]


async def test_a_slow_relay_is_waited_for_while_the_attempt_heartbeats(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The heartbeat timeout must not end a live send: the relay answers the end of the message
    only after more than SEND_HEARTBEAT_TIMEOUT, and the first attempt still completes."""
    slow = SEND_HEARTBEAT_TIMEOUT.total_seconds() + 4

    async def answer_late(_: Transaction) -> bytes | None:
        await asyncio.sleep(slow)
        return b"250 2.0.0 queued"

    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY)
    async with wire_relay() as relay:
        relay.on_end = answer_late
        config = EngineConfig(
            temporal_address=dev_server_env.client.service_client.config.target_host,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
            data_dir=tmp_path / "data",
            policy_file=policy_file,
            smtp_port=relay.port,
        )
        worker = WorkerProcess(config, tmp_path / "logs")
        store = SqlStore.from_url(config.database_url)
        try:
            await worker.start()
            service = CheckoutService(dev_server_env.client, store, config.task_queue)
            checkout = sample_checkout(checkoutId=f"slow-{uuid.uuid4()}")
            outcome = await service.report(checkout, load_policy(str(policy_file)))

            async def recorded() -> bool:
                record = await store.get(outcome.checkout_id)
                return record is not None and len(record.activities) >= 2

            await eventually(recorded, timeout=slow + 30, what="the step's entry")
            record = await store.get(outcome.checkout_id)
            history = await dev_server_env.client.get_workflow_handle(
                workflow_id_for(outcome.checkout_id)
            ).fetch_history()
        finally:
            worker.process.close()
            await store.close()
            print(worker.process.logs())

    assert record is not None
    assert record.activities[-1].type is ActivityType.EMAIL_SENT
    started = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert started == [1], f"attempts {started}: the live send was timed out"
    assert len(relay.accepted) == 1
