"""Loading the checkout a step works on: the newest snapshot, as the store holds it.

A checkout is written to the store before its flow starts, so a missing row will not appear by
retrying: it fails the step for good.
"""

from temporalio.exceptions import ApplicationError

from domain.activity import ActivityEntry, ActivityType, NotSentReason
from domain.checkout import AbandonedCheckout
from domain.steps import StepRequest
from store.sql import SqlStore


def missing_checkout(checkout_id: str, error_type: str | None = None) -> ApplicationError:
    return ApplicationError(
        f"checkout {checkout_id} is not in the store",
        "checkout_missing_from_store",
        type=error_type,
        non_retryable=True,
    )


async def staff_step_checkout(
    store: SqlStore, request: StepRequest, not_done: ActivityType
) -> AbandonedCheckout | ActivityEntry:
    """The checkout a staff step works on, or, when the step must not touch it any more
    (recovered, cancelled, the buyer bought elsewhere, erased), the `not_done` entry with the
    reason, recorded already. Read right before the side effect, as email steps do."""
    checkout = await store.get(request.checkout_id, with_activities=False)
    reason: NotSentReason | None
    if checkout is None:
        if not await store.is_erased(request.checkout_id):
            raise missing_checkout(request.checkout_id)
        reason = NotSentReason.ERASED
    else:
        reason = checkout.halted()
    if reason is None:
        assert checkout is not None
        return checkout
    entry = ActivityEntry(
        type=not_done, created_date=request.at, step=request.step_index + 1, reason=reason
    )
    await store.record_activity(request.checkout_id, request.key, entry)
    return entry
