"""A checkout's history for people: its activity entries and its recovery, in time order."""

from dataclasses import dataclass
from datetime import datetime

from domain.activity import ActivityType, NotSentReason
from domain.checkout import AbandonedCheckout
from domain.schedule import Consent

RECOVERED = "RECOVERED"

_EXPLANATIONS: dict[str, str] = {
    NotSentReason.RECOVERED: "the checkout was recovered before the step's send",
    NotSentReason.NO_EMAIL: "the buyer gave no email address",
    NotSentReason.INVALID_ADDRESS: "the SMTP server refused the recipient",
    NotSentReason.SMTP_REJECTED: "the SMTP server refused the message",
    NotSentReason.SMTP_UNAVAILABLE: "the relay stayed down through every retry",
    NotSentReason.DELIVERY_UNCONFIRMED: (
        "a worker stopped between handing the email over and recording it; "
        "it may have arrived, so it was not sent again"
    ),
    NotSentReason.UNSUBSCRIBED: "the buyer unsubscribed",
    NotSentReason.FREQUENCY_CAPPED: "another checkout mailed this buyer too recently",
    NotSentReason.NO_CONSENT: "the buyer has not agreed to marketing email",
    NotSentReason.HOLDOUT: "the checkout is in the holdout group, which gets no email",
    NotSentReason.STALE_REPORT: "the checkout was reported too long after it was abandoned",
    NotSentReason.OVERDUE: "the step was already due when the checkout was reported",
    NotSentReason.CONDITION_FAILED: "the step's conditions did not hold",
}

_CONSENT_WORDS: dict[str, str] = {
    Consent.SUBSCRIBER: "the buyer agreed to marketing email",
    Consent.NOT_REQUIRED: "the policy mails every buyer, consent or not",
    Consent.FIRST_EMAIL: "not a subscriber: the policy allows this one first email",
    Consent.REFUSED: "not a subscriber, and the policy allows no (further) email",
}


@dataclass(frozen=True)
class Entry:
    kind: str
    """An activity type, or RECOVERED."""
    at: datetime
    step: int | None = None
    reason: str | None = None
    explanation: str | None = None
    consent: str | None = None
    """Email steps: the consent decision the step took (domain.schedule.Consent)."""
    consent_words: str | None = None
    copy_kept: bool = False
    """EMAIL_SENT: the store kept the email as sent (the page links to it)."""


def timeline(checkout: AbandonedCheckout, kept: frozenset[int] = frozenset()) -> list[Entry]:
    """`kept`: the steps whose sent email has a copy (SqlStore.steps_with_sent_emails)."""
    entries = [
        Entry(
            a.type.value,
            a.created_date,
            a.step,
            a.reason,
            _explain(a.reason),
            a.consent,
            _CONSENT_WORDS.get(a.consent) if a.consent else None,
            a.type is ActivityType.EMAIL_SENT and a.step in kept,
        )
        for a in checkout.activities
    ]
    if checkout.checkout_recovered_date is not None:
        entries.append(Entry(RECOVERED, checkout.checkout_recovered_date))
    # Stable: entries written at the same moment keep the store's order.
    return sorted(entries, key=lambda entry: entry.at)


def _explain(reason: str | None) -> str | None:
    # StrEnum members hash as their values: the plain reason string finds its explanation.
    return _EXPLANATIONS.get(reason.partition(":")[0]) if reason else None
