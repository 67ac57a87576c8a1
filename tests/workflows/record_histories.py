"""Record the workflow histories the replay test checks against current workflow code.

Run after a deliberate, patched change to the workflow, never to "fix" a failing replay test:
    .venv/bin/python -m tests.workflows.record_histories [--all]

Without --all it records only the newest history: the older ones were made by older workflow code
and are kept as they are, so that the replay test checks the code still runs what they hold.
"""

import asyncio
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from domain.flow import CHECKOUT_UPDATED_SIGNAL, workflow_id_for
from service.checkouts import CheckoutService
from store.sql import SqlStore
from tests.support import (
    engine_settings,
    running_engine,
    sample_checkout,
    smtp_server,
    start_time_skipping,
)
from workers.policy_files import load_policy

HISTORIES = Path(__file__).parent / "histories"


async def _record(
    env: WorkflowEnvironment, service: CheckoutService, name: str, recover_after: timedelta | None
) -> None:
    now = await env.get_current_time()
    checkout = sample_checkout(checkoutId=f"replay-{name}").model_copy(update={"created_date": now})
    outcome = await service.report(checkout, load_policy("default"), now=now)
    handle = env.client.get_workflow_handle(workflow_id_for(outcome.checkout_id))
    if recover_after is not None:
        await env.sleep(recover_after)
        await asyncio.sleep(2)  # let the step's activity finish in real time
        await service.recover(outcome.checkout_id, order_id="order-1")
    await _save_when_done(env, handle, name)


async def _save_when_done(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], name: str
) -> None:
    await env.client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
    await handle.result()
    await env.client.test_service.lock_time_skipping(LockTimeSkippingRequest())
    history = await handle.fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())
    print(f"wrote {HISTORIES / f'{name}.json'} ({len(history.events)} events)")


async def _record_duplicate_update_then_purchase(
    env: WorkflowEnvironment, service: CheckoutService
) -> None:
    """A cart update delivered twice (the hand-off delivers at least once; patch
    "dedupe-updates"), then the buyer buys through another checkout (buyer_purchased)."""
    name = "duplicate_update_then_buyer_purchased"
    policy = load_policy("default").model_copy(update={"on_cart_update": "reset"})
    now = await env.get_current_time()
    buyer = {"email": "replay-buyer@example.com", "visitorId": "replay-visitor"}
    checkout = sample_checkout(checkoutId=f"replay-{name}", buyerInfo=buyer).model_copy(
        update={"created_date": now}
    )
    sibling = sample_checkout(checkoutId=f"replay-{name}-sibling", buyerInfo=buyer)
    outcome = await service.report(checkout, policy, now=now)
    other = await service.report(sibling.model_copy(update={"created_date": now}), policy, now=now)
    handle = env.client.get_workflow_handle(workflow_id_for(outcome.checkout_id))
    await env.sleep(timedelta(minutes=30))
    snapshot = checkout.model_copy(
        update={"id": outcome.checkout_id, "updated_date": await env.get_current_time()}
    )
    await handle.signal(CHECKOUT_UPDATED_SIGNAL, snapshot)
    await handle.signal(CHECKOUT_UPDATED_SIGNAL, snapshot)
    await env.sleep(timedelta(hours=2))
    await asyncio.sleep(2)  # let the step's activity finish in real time
    await service.recover(other.checkout_id, order_id="order-2")
    await _save_when_done(env, handle, name)


async def main() -> None:
    HISTORIES.mkdir(exist_ok=True)
    env = await start_time_skipping()
    with tempfile.TemporaryDirectory() as tmp, smtp_server() as smtp:
        store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp}/store.db")
        await store.create_schema()
        async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
            if "--all" in sys.argv:
                await _record(env, service, "full_default_policy", None)
                await _record(env, service, "recovered_after_first_email", timedelta(hours=2))
            await _record_duplicate_update_then_purchase(env, service)
        await store.close()
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
