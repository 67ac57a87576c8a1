"""What a recovery workflow takes, keeps and answers: the contracts between callers and the flow."""

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel
from temporalio.common import SearchAttributeKey

from domain.activity import NotSentReason
from domain.base import Contract
from domain.checkout import AbandonedCheckout
from domain.flow_state import CarriedState
from domain.policy import RecoveryPolicy

WORKFLOW_ID_PREFIX = "abandoned-checkout-"
WORKFLOW_NAME = "AbandonedCheckoutWorkflow"

# The flow's signals, by the names both the workflow and the hand-off use.
RECOVERED_SIGNAL = "recovered"
CHECKOUT_UPDATED_SIGNAL = "checkout_updated"
UNSUBSCRIBED_SIGNAL = "unsubscribed"
EMAIL_SUPPRESSED_SIGNAL = "email_suppressed"
"""The relay reported a hard bounce or a complaint for the buyer's address (store.feedback): the
flow's next email steps record EMAIL_NOT_SENT with the signal's reason."""
CANCEL_SIGNAL = "cancel"
BUYER_PURCHASED_SIGNAL = "buyer_purchased"
"""Another checkout of the same buyer was recovered (or the shop reported the buyer's order):
this flow stops before its next step, without counting as recovered."""


class ClosedBecause(StrEnum):
    """How a flow ended: its result's `closed_because`."""

    RECOVERED = "recovered"
    CANCELLED = "cancelled"
    BUYER_PURCHASED = "buyer_purchased"
    WINDOW_ELAPSED = "window_elapsed"


# What a flow publishes for the Temporal UI and `temporal workflow list --query`: no personal data.
STATUS_ATTRIBUTE = SearchAttributeKey.for_keyword("CheckoutRecoveryStatus")
"""ABANDONED while the flow runs; RECOVERED, CANCELLED, PURCHASED_ELSEWHERE or NOT_RECOVERED once
it closed."""
STEP_ATTRIBUTE = SearchAttributeKey.for_int("CheckoutRecoveryStep")
"""The number of the policy step the flow reached last (0 before the first)."""
SEARCH_ATTRIBUTES = (STATUS_ATTRIBUTE, STEP_ATTRIBUTE)
CLOSED_STATUS: dict[str, str] = {
    ClosedBecause.RECOVERED: "RECOVERED",
    ClosedBecause.CANCELLED: "CANCELLED",
    ClosedBecause.BUYER_PURCHASED: "PURCHASED_ELSEWHERE",
    ClosedBecause.WINDOW_ELAPSED: "NOT_RECOVERED",
}


def workflow_id_for(checkout_id: str) -> str:
    """The one workflow ID of a checkout's flow; it carries our opaque id, never buyer data."""
    return f"{WORKFLOW_ID_PREFIX}{checkout_id}"


def step_key(workflow_id: str, step_index: int) -> str:
    """The idempotency key of one step of one flow: the same on every retry of that step."""
    return f"{workflow_id}/step-{step_index + 1}"


class RecoveryInput(Contract):
    checkout: AbandonedCheckout
    policy: RecoveryPolicy
    abandoned_at: AwareDatetime
    """Delays count from here: the checkout's createdDate, or the moment it was reported."""
    reported_at: AwareDatetime
    """When the engine took the report; the time of the SCHEDULED entry."""
    publish_search_attributes: bool = False
    """Set by the starter when the namespace has our search attributes registered: upserting an
    unregistered one would fail the flow's workflow task."""
    carried: CarriedState | None = None
    """None for a flow's start; the state the run before left, for a run continued as new."""


class RecoveredSignal(Contract):
    order_id: str | None = None
    recovered_at: AwareDatetime | None = None
    """When the buyer completed the purchase; the flow's own clock when not given."""


class EmailSuppressedSignal(Contract):
    reason: NotSentReason
    """`bounced` or `complained`: what the flow's next email steps record."""


SIGNAL_ARGUMENTS: dict[str, type[BaseModel] | None] = {
    RECOVERED_SIGNAL: RecoveredSignal,
    CHECKOUT_UPDATED_SIGNAL: AbandonedCheckout,
    UNSUBSCRIBED_SIGNAL: None,
    EMAIL_SUPPRESSED_SIGNAL: EmailSuppressedSignal,
    CANCEL_SIGNAL: None,
    BUYER_PURCHASED_SIGNAL: None,
}
"""Each signal's argument type (None: it takes none), for callers that hold it as JSON."""


class RecoveryResult(Contract):
    status: str
    closed_because: str
    """One of ClosedBecause."""
    steps_run: int
    recovered_at: datetime | None = None
