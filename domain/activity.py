"""Activity entries: the per-checkout log of what the engine did, as the reference API shows it."""

from enum import StrEnum

from pydantic import AwareDatetime

from domain.base import CamelModel

NEWEST_ACTIVITIES = 20
"""The reference API's view of a checkout (get, query) shows this many of its newest entries."""


class ActivityType(StrEnum):
    SCHEDULED = "SCHEDULED"
    EMAIL_SENT = "EMAIL_SENT"
    EMAIL_NOT_SENT = "EMAIL_NOT_SENT"
    NOTIFICATION_SENT = "NOTIFICATION_SENT"
    TASK_CREATED = "TASK_CREATED"
    # Our extension: a staff step that found, right before its side effect, that the flow had
    # to stop (recovered, cancelled, erased, the buyer bought elsewhere). Carries a reason.
    NOTIFICATION_NOT_SENT = "NOTIFICATION_NOT_SENT"
    TASK_NOT_CREATED = "TASK_NOT_CREATED"
    # Our extension: an operator acted from the dashboard (recovered, cancelled, a task done or
    # reopened); the reason names the action and the API key's name, e.g. "recovered by Ada".
    OPERATOR_ACTION = "OPERATOR_ACTION"


class NotSentReason(StrEnum):
    """Why a step did not send (our extension of the reference's EMAIL_NOT_SENT); staff steps
    use the first few for NOTIFICATION_NOT_SENT and TASK_NOT_CREATED."""

    RECOVERED = "recovered"
    CANCELLED = "cancelled"
    """The flow was cancelled before the step's side effect."""
    BUYER_PURCHASED = "buyer_purchased"
    """The buyer completed a purchase through another checkout (on_purchase = stop_buyer)."""
    ERASED = "erased"
    """The buyer's data was erased before the step's side effect."""
    NO_EMAIL = "no_email"
    INVALID_ADDRESS = "invalid_address"
    SMTP_REJECTED = "smtp_rejected"
    SMTP_UNAVAILABLE = "smtp_unavailable"
    TEMPLATE_ERROR = "template_error"
    DELIVERY_UNCONFIRMED = "delivery_unconfirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    """The relay reported a hard bounce of the address (in any shop): suppressed everywhere."""
    COMPLAINED = "complained"
    """The buyer marked an email of this shop as spam: suppressed in the shop."""
    FREQUENCY_CAPPED = "frequency_capped"
    NO_CONSENT = "no_consent"
    HOLDOUT = "holdout"
    STALE_REPORT = "stale_report"
    OVERDUE = "overdue"
    CONDITION_FAILED = "condition_failed"
    """Written as `condition_failed:min_total,languages`, naming the conditions that failed."""
    # SMS steps (domain.sms), recorded as NOTIFICATION_NOT_SENT with channel `sms`.
    NO_SMS_CONSENT = "no_sms_consent"
    """The checkout does not say `smsConsent: true` (absent means no)."""
    NO_PHONE = "no_phone"
    INVALID_PHONE = "invalid_phone"
    """contactDetails.phone is not in E.164 (+ and 8 to 15 digits)."""
    SMS_STOP = "sms_stop"
    """The number replied STOP (or UNSUBSCRIBE, CANCEL, ...) to one of our texts."""
    SMS_REJECTED = "sms_rejected"
    """The SMS provider refused the message for good (4xx: a bad number, a blocked sender)."""
    SMS_UNAVAILABLE = "sms_unavailable"
    """The SMS provider answered 5xx or could not be reached on every attempt."""
    SMS_NOT_CONFIGURED = "sms_not_configured"
    """The worker has no SMS provider settings (CHECKOUT_RECOVERY_SMS_*)."""


class ActivityEntry(CamelModel):
    """One entry of a checkout's activity timeline (the reference API's word; not a Temporal
    activity). `step` and `reason` are our extended view, absent from the reference."""

    type: ActivityType
    created_date: AwareDatetime
    step: int | None = None
    reason: str | None = None
    consent: str | None = None
    """Email steps: the consent decision the step took (see domain.schedule.Consent)."""
    channel: str | None = None
    """`sms` on an SMS step's NOTIFICATION_SENT (the reference has no SMS type); absent: the
    type's own channel (email for EMAIL_*, the staff webhook for NOTIFICATION_*)."""
    variant: str | None = None
    """Email steps with A/B variants: the variant this checkout got (domain.variants)."""
    outcome: str | None = None
    """EMAIL_SENT: what the relay reported later, `bounced` or `complained` (domain.feedback)."""
    outcome_date: AwareDatetime | None = None
