"""What a relay tells us after it accepted an email: a bounce or a spam complaint.

Every provider's webhook (api.feedback) is read into these reports, so the store, the flows and the
statistics see one shape whatever relay sent it. A report names the address the relay tried and,
when the relay kept it, the Message-ID we gave the email, which links it to the step that sent it.
"""

from enum import StrEnum

from pydantic import AwareDatetime, Field

from domain.base import Contract


class FeedbackKind(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    """The address does not exist or refuses mail for good: suppressed in every shop."""
    SOFT_BOUNCE = "soft_bounce"
    """A passing failure (mailbox full, greylisting): counted, not suppressed."""
    COMPLAINT = "complaint"
    """The buyer marked the email as spam: suppressed in the shop that sent it."""


class FeedbackReport(Contract):
    """One provider event about one recipient, as every provider's parser gives it."""

    provider: str = Field(min_length=1, max_length=32)
    """ses, sendgrid, postmark or generic."""
    kind: FeedbackKind
    email: str = Field(min_length=3, max_length=320)
    """The recipient the relay reported on. Never logged; the store keeps only its key."""
    message_id: str | None = Field(default=None, max_length=300)
    """Our Message-ID without angle brackets, when the provider reports it."""
    occurred_at: AwareDatetime


def bare_message_id(value: str | None) -> str | None:
    """A Message-ID as the providers give it (`<x@y>`, ` x@y `) in the form sent_log keeps.

    sent_log keeps the Message-ID header's value as the email carried it; compare through this
    rule on both sides."""
    if value is None:
        return None
    bare = value.strip().strip("<>").strip()
    return bare or None
