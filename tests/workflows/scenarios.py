"""Shared steps of the time-skipping scenarios: report with the test server's clock, wait for a
flow's result while time skips, read the entries the store holds."""

from datetime import timedelta

from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
from temporalio.testing import WorkflowEnvironment

from domain.activity import ActivityType
from domain.checkout import AbandonedCheckout
from domain.flow import RecoveryResult, workflow_id_for
from domain.policy import RecoveryPolicy
from service.checkouts import CheckoutService
from store.sql import SqlStore
from tests.support import default_policy_any_hour, eventually
from workflows.abandoned_checkout import AbandonedCheckoutWorkflow


async def flow_result(
    service: CheckoutService, env: WorkflowEnvironment, checkout_id: str
) -> RecoveryResult:
    """Wait for the flow's result, letting the test server skip time meanwhile.

    The SDK skips time by itself only for handles returned by its own start_workflow; the service
    starts flows, so the test unlocks time skipping around the wait as the SDK would.
    """
    handle = env.client.get_workflow_handle_for(
        AbandonedCheckoutWorkflow.run, workflow_id_for(checkout_id)
    )
    test_service = env.client.test_service
    await test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
    try:
        return await handle.result()
    finally:
        await test_service.lock_time_skipping(LockTimeSkippingRequest())


async def entries(store: SqlStore, checkout_id: str) -> list[tuple[ActivityType, str | None]]:
    found = await store.get(checkout_id)
    assert found is not None
    return [(a.type, a.reason) for a in found.activities]


def has_entry(store: SqlStore, checkout_id: str, kind: ActivityType, count: int = 1):
    async def probe() -> bool:
        return [t for t, _ in await entries(store, checkout_id)].count(kind) >= count

    return probe


async def skip_past_first_step(
    env: WorkflowEnvironment,
    store: SqlStore,
    checkout_id: str,
    entry: ActivityType = ActivityType.EMAIL_SENT,
    timeout: float = 30.0,
) -> None:
    """Move the test server's clock past step 1 (due at 1 h) and wait for its entry."""
    await env.sleep(timedelta(hours=2))
    await eventually(has_entry(store, checkout_id, entry), timeout=timeout, what=f"step 1 {entry}")


async def report_now(
    service: CheckoutService,
    env: WorkflowEnvironment,
    checkout: AbandonedCheckout,
    policy: RecoveryPolicy | None = None,
) -> tuple[str, AbandonedCheckout]:
    """Report with the test server's clock, which earlier time skips may have moved ahead."""
    now = await env.get_current_time()
    checkout = checkout.model_copy(update={"created_date": now})
    outcome = await service.report(checkout, policy or default_policy_any_hour(), now=now)
    assert outcome.new
    return outcome.checkout_id, checkout
