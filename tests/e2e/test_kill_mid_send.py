"""A worker SIGKILLed in the middle of two SMTP conversations, and what each buyer gets.

Two real worker processes, the session's Temporal dev server, a SQLite store and a relay that
speaks SMTP line by line (tests/smtp_wire.py), so the test can hold each conversation at an exact
point while it kills the worker that holds them:

- Ada's at DATA, before the relay's 354: nothing claimed yet, so after the attempt times out the
  other worker sends it, and she gets it once;
- Bob's after the final dot, before the relay's answer: the relay has it, the claim is made, so
  the retry must not send it again; he gets it once, and his entry says delivery_unconfirmed.
"""

import asyncio
import signal
import uuid
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from domain.activity import ActivityType, NotSentReason
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

            # The killed attempts are noticed when they time out (STEP_TIMEOUT, no heartbeat).
            await eventually(
                settled, timeout=STEP_TIMEOUT.total_seconds() + 60, what="both steps recorded"
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
