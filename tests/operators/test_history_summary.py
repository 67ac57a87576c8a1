"""The history summary on a recorded real flow, and on failures as the SDK writes them."""

import base64
from datetime import UTC, datetime
from pathlib import Path

from temporalio.api.enums.v1 import EventType, RetryState
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import (
    ActivityTaskFailedEventAttributes,
    ActivityTaskScheduledEventAttributes,
    ActivityTaskStartedEventAttributes,
    HistoryEvent,
)
from temporalio.client import WorkflowHistory
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from cli.history_summary import decode_failure_messages, summarise_history
from workers.settings import Settings
from workers.temporal_client import data_converter_for

HISTORIES = Path(__file__).parent.parent / "workflows" / "histories"


def test_a_recovered_flow_reads_as_timers_activities_and_a_signal() -> None:
    # Recorded on the time-skipping server by tests/workflows/record_histories.py: the default
    # policy's first email after an hour, then a recovery an hour later.
    history = WorkflowHistory.from_json(
        "recovered", (HISTORIES / "recovered_after_first_email.json").read_text()
    )
    rows = [(r.event, r.name, r.detail) for r in summarise_history(history.events)]
    assert rows == [
        (
            "workflow started",
            "AbandonedCheckoutWorkflow",
            "task queue test-279df241-eeb5-4363-9801-aae7ec4bd226",
        ),
        ("timer started", "1h", "fires at 2036-11-22 12:17:35 UTC"),
        ("timer fired", "1h", "set at 2036-11-22 11:17:35 UTC"),
        ("activity scheduled", "send_recovery_email", "up to 10 attempts"),
        ("activity completed", "send_recovery_email", ""),
        ("timer started", "23h", "fires at 2036-11-23 11:17:35 UTC"),
        ("signal received", "recovered", ""),
        ("timer cancelled", "23h", "set at 2036-11-22 12:17:35 UTC; the flow woke early"),
        ("activity scheduled", "record_recovery", "up to 20 attempts"),
        ("activity completed", "record_recovery", ""),
        ("workflow completed", "", ""),
    ]


async def _failure(converter_settings: Settings, message: str, cause: str) -> Failure:
    """A failure as the worker's converter writes it for an exception with a cause."""
    try:
        try:
            raise ConnectionError(cause)
        except ConnectionError as err:
            raise ApplicationError(
                message, type="PermanentEmailFailure", non_retryable=True
            ) from err
    except ApplicationError as err:
        failure = Failure()
        await data_converter_for(converter_settings).encode_failure(err, failure)
        return failure


def _event(event_id: int, event_type: "EventType.ValueType", **attributes: object) -> HistoryEvent:
    event = HistoryEvent(event_id=event_id, event_type=event_type, **attributes)  # type: ignore[arg-type]
    event.event_time.FromDatetime(datetime(2026, 5, 1, 10, 0, event_id, tzinfo=UTC))
    return event


async def test_retries_and_failures_show_attempts_and_errors_even_when_encrypted() -> None:
    keys = f"test-key:{base64.b64encode(b'k' * 32).decode()}"
    encrypted = Settings(codec_keys=keys)
    earlier = await _failure(encrypted, "SMTP 451", "server busy")
    final = await _failure(encrypted, "recipient refused with [550]", "no such user")
    assert final.message == "Encoded failure"  # the text Temporal stores is a placeholder
    retry = RetryPolicy(maximum_attempts=10).apply_to_proto
    scheduled = ActivityTaskScheduledEventAttributes()
    scheduled.activity_type.name = "send_recovery_email"
    retry(scheduled.retry_policy)
    events = [
        _event(
            5,
            EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
            activity_task_scheduled_event_attributes=scheduled,
        ),
        _event(
            6,
            EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
            activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(
                scheduled_event_id=5, attempt=3, last_failure=earlier
            ),
        ),
        _event(
            7,
            EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
            activity_task_failed_event_attributes=ActivityTaskFailedEventAttributes(
                scheduled_event_id=5,
                started_event_id=6,
                failure=final,
                retry_state=RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE,
            ),
        ),
    ]

    await decode_failure_messages(events, data_converter_for(encrypted))
    rows = [(r.event, r.name, r.attempt, r.error, r.detail) for r in summarise_history(events)]

    assert rows == [
        ("activity scheduled", "send_recovery_email", None, None, "up to 10 attempts"),
        (
            "activity retried",
            "send_recovery_email",
            3,
            "PermanentEmailFailure: SMTP 451 <- ConnectionError: server busy",
            "attempt 3; the attempt before failed: "
            "PermanentEmailFailure: SMTP 451 <- ConnectionError: server busy",
        ),
        (
            "activity failed",
            "send_recovery_email",
            3,
            "PermanentEmailFailure: recipient refused with [550] <- ConnectionError: no such user",
            "PermanentEmailFailure: recipient refused with [550] <- ConnectionError: no such user"
            " (not retryable)",
        ),
    ]
