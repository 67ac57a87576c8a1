"""What a recovery flow hands the next run of itself when it continues as new.

A flow that takes many signals (a busy cart sends an update per change) would grow its event
history without bound; past a threshold it continues as new: the run closes and a fresh run of
the same workflow ID starts with an empty history and this state in its input. Everything the
flow decides with is here, so the new run goes on exactly where the old one stopped: the same
steps left, the same due times, the same idempotency keys (derived from the workflow ID and the
step, both unchanged), the same dedupe of cart updates.
"""

from pydantic import AwareDatetime

from domain.base import Contract
from domain.checkout import AbandonedCheckout
from domain.schedule import FlowProgress


class CarriedState(Contract):
    checkout: AbandonedCheckout
    """The checkout as last updated, with the activity entries the flow has made so far."""
    next_step: int
    """The index of the policy step to run next: the steps before it have run (or were ruled
    out); the number of steps when every step has and the flow listens for a recovery."""
    steps_run: int
    """The steps that ran, for the flow's result."""
    progress: FlowProgress
    """What the steps so far and the unsubscribed and email_suppressed signals leave for the next
    step decision."""
    anchor: AwareDatetime
    """Steps are due at anchor + delay: the abandonment, or the last cart update under
    on_cart_update = "reset". The new run waits for the same due time, not a fresh delay."""
    last_update: AwareDatetime | None = None
    """The updatedDate of the newest cart update applied: an older or repeated one is ignored."""
    listen_until: AwareDatetime | None = None
    """Set once the last step has run: when the listen window ends."""
    recovered: bool = False
    """A recovery signal had come (a run continues only when nothing stopped it, so these four
    are False in practice; carried so that no stop could ever be dropped)."""
    order_id: str | None = None
    recovered_at: AwareDatetime | None = None
    cancelled: bool = False
    buyer_purchased: bool = False
    runs: int = 1
    """The runs of this flow before the one this state starts (1 for the first continuation)."""
