"""What a recovery workflow takes, keeps and answers: the contracts between callers and the flow."""

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict
from temporalio.common import SearchAttributeKey

from domain.checkout import AbandonedCheckout
from domain.policy import RecoveryPolicy

WORKFLOW_ID_PREFIX = "abandoned-checkout-"

# What a flow publishes for the Temporal UI and `temporal workflow list --query`: no personal data.
STATUS_ATTRIBUTE = SearchAttributeKey.for_keyword("CheckoutRecoveryStatus")
"""ABANDONED while the flow runs; RECOVERED, CANCELLED or NOT_RECOVERED once it closed."""
STEP_ATTRIBUTE = SearchAttributeKey.for_int("CheckoutRecoveryStep")
"""The number of the policy step the flow reached last (0 before the first)."""
SEARCH_ATTRIBUTES = (STATUS_ATTRIBUTE, STEP_ATTRIBUTE)
CLOSED_STATUS = {
    "recovered": "RECOVERED",
    "cancelled": "CANCELLED",
    "window_elapsed": "NOT_RECOVERED",
}


def workflow_id_for(checkout_id: str) -> str:
    """The one workflow ID of a checkout's flow; it carries our opaque id, never buyer data."""
    return f"{WORKFLOW_ID_PREFIX}{checkout_id}"


def step_key(workflow_id: str, step_index: int) -> str:
    """The idempotency key of one step of one flow: the same on every retry of that step."""
    return f"{workflow_id}/step-{step_index + 1}"


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecoveryInput(_Contract):
    checkout: AbandonedCheckout
    policy: RecoveryPolicy
    abandoned_at: AwareDatetime
    """Delays count from here: the checkout's createdDate, or the moment it was reported."""
    reported_at: AwareDatetime
    """When the engine took the report; the time of the SCHEDULED entry."""
    publish_search_attributes: bool = False
    """Set by the starter when the namespace has our search attributes registered: upserting an
    unregistered one would fail the flow's workflow task."""


class RecoveredSignal(_Contract):
    order_id: str | None = None
    recovered_at: AwareDatetime | None = None
    """When the buyer completed the purchase; the flow's own clock when not given."""


class RecoveryResult(_Contract):
    status: str
    closed_because: str
    """"recovered", "cancelled" or "window_elapsed"."""
    steps_run: int
    recovered_at: datetime | None = None
