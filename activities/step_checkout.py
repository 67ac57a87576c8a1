"""Loading the checkout a step works on: the newest snapshot, as the store holds it."""

from temporalio.exceptions import ApplicationError

from domain.checkout import AbandonedCheckout
from store.sql import SqlStore


async def checkout_for_step(
    store: SqlStore, checkout_id: str, error_type: str | None = None
) -> AbandonedCheckout:
    """The checkout without its activity list; a missing one fails the step for good.

    A checkout is written to the store before its flow starts, so a missing row will not appear
    by retrying. `error_type` lets a step choose how the workflow reads the failure.
    """
    checkout = await store.get(checkout_id, with_activities=False)
    if checkout is None:
        raise missing_checkout(checkout_id, error_type)
    return checkout


def missing_checkout(checkout_id: str, error_type: str | None = None) -> ApplicationError:
    return ApplicationError(
        f"checkout {checkout_id} is not in the store",
        "checkout_missing_from_store",
        type=error_type,
        non_retryable=True,
    )
