"""The contracts between the workflow and its activities: small models, names fixed here.

The workflow calls activities by these names so that it never imports activity code (which pulls in
SMTP, HTTP and database libraries that have no place in a deterministic sandbox).
"""

from datetime import timedelta

from pydantic import AwareDatetime

from domain.activity import ActivityEntry
from domain.base import Contract
from domain.policy import EmailStep, FrequencyCap, NotificationStep, SmsStep, TaskStep

SEND_EMAIL = "send_recovery_email"
SEND_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
"""How soon Temporal gives up an email attempt that stopped heartbeating (its worker died), and
retries it elsewhere: the attempt's own timeout is a minute. The activity beats well within it."""
SEND_NOTIFICATION = "send_staff_notification"
CREATE_TASK = "create_staff_task"
SEND_SMS = "send_recovery_sms"
RECORD_ACTIVITY = "record_activity"
RECORD_RECOVERY = "record_recovery"

# Failure types an email activity raises as non-retryable; the workflow turns them into an
# EMAIL_NOT_SENT entry carrying the reason given in the error's details.
PERMANENT_EMAIL_FAILURE = "PermanentEmailFailure"
# The same for an SMS step: NOTIFICATION_NOT_SENT (channel sms) with the reason in the details.
PERMANENT_SMS_FAILURE = "PermanentSmsFailure"


class StepRequest(Contract):
    checkout_id: str
    workflow_id: str
    step_index: int
    key: str
    """Idempotency key of the step: the same on every retry."""
    at: AwareDatetime
    """The flow's clock when the step ran; the activity entry carries this time."""


class EmailStepRequest(StepRequest):
    step: EmailStep
    frequency_cap: FrequencyCap = FrequencyCap(window=timedelta(0))
    consent: str | None = None
    """The consent decision the flow took for this step; recorded with the entry."""
    time_zone: str = "UTC"
    """The buyer's zone, for the dates the email shows."""


class EmailStepResult(ActivityEntry):
    """The email step's answer: its entry, or (with `deferred_until`) a send the frequency cap
    put off, which the flow retries then and which is recorded nowhere yet."""

    deferred_until: AwareDatetime | None = None


class NotificationStepRequest(StepRequest):
    step: NotificationStep


class TaskStepRequest(StepRequest):
    step: TaskStep


class SmsStepRequest(StepRequest):
    step: SmsStep
    frequency_cap: FrequencyCap = FrequencyCap(window=timedelta(0))
    """The cap across channels: a text counts as a recovery message to the buyer's email
    address, and a capped text is not sent (no deferral: a late text is worse than none)."""
    time_zone: str = "UTC"
    """The buyer's zone, for the dates the text shows."""


class RecordActivityRequest(Contract):
    checkout_id: str
    key: str
    entry: ActivityEntry


class RecordRecoveryRequest(Contract):
    checkout_id: str
    recovered_at: AwareDatetime
    order_id: str | None = None
