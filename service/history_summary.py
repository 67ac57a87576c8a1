"""A workflow's event history, summarised for people: one readable row per event that matters.

Temporal's raw history interleaves what the flow did (timers, activities, signals) with its own
bookkeeping (workflow tasks, markers). The rows keep the first and drop the second, and they never
show payloads (inputs, results, signal arguments, failure details): those hold buyer data and may
be encrypted. Failure messages are shown, because they say why a step failed; with payload
encryption on they are encrypted too, and `decode_failure_messages` opens them with the codec.

`summarise_history` is pure (protobuf events in, rows out) so that it is tested on recorded
histories without a server.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import EventType, RetryState, WorkflowTaskFailedCause
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.converter import DataConverter
from temporalio.exceptions import FailureError

from domain.durations import format_duration


@dataclass(frozen=True)
class HistoryRow:
    event_id: int
    time: datetime
    event: str
    """What happened, e.g. "timer fired", "activity failed", "signal received"."""
    name: str = ""
    """The activity type, signal name, workflow type, or the timer's duration."""
    detail: str = ""
    attempt: int | None = None
    """For activities: the attempt the event belongs to (retries are not separate events)."""
    error: str | None = None
    """For failures: the error, with its type and causes."""


# Workflow-task events are how the worker and the server take turns; markers record SDK
# internals (patches, side effects). Neither says anything about the checkout's flow.
_BOOKKEEPING = frozenset(
    {
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        EventType.EVENT_TYPE_MARKER_RECORDED,
    }
)


class _Context:
    """What later events refer back to by event id: activity names and attempts, timers."""

    def __init__(self) -> None:
        self.activity_names: dict[int, str] = {}
        self.attempts: dict[int, int] = {}
        """Scheduled event id -> the attempt its started event recorded."""
        self.timers: dict[int, tuple[timedelta, datetime]] = {}
        """Started event id -> the timer's duration and when it started."""


def summarise_history(events: Iterable[HistoryEvent]) -> list[HistoryRow]:
    """The readable rows of a history, in event order."""
    context = _Context()
    rows: list[HistoryRow] = []
    for event in events:
        if event.event_type in _BOOKKEEPING:
            continue
        row = _DESCRIBERS.get(event.event_type, _generic)(event, context)
        if row is not None:
            rows.append(row)
    return rows


def _row(
    event: HistoryEvent,
    what: str,
    *,
    name: str = "",
    detail: str = "",
    attempt: int | None = None,
    error: str | None = None,
) -> HistoryRow:
    return HistoryRow(event.event_id, _time(event), what, name, detail, attempt, error)


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


# --- workflow ------------------------------------------------------------------------------


def _workflow_started(event: HistoryEvent, _: _Context) -> HistoryRow:
    attrs = event.workflow_execution_started_event_attributes
    detail = f"task queue {attrs.task_queue.name}"
    if attrs.continued_execution_run_id:
        detail += f"; continues run {attrs.continued_execution_run_id}"
    return _row(event, "workflow started", name=attrs.workflow_type.name, detail=detail)


def _workflow_completed(event: HistoryEvent, _: _Context) -> HistoryRow:
    return _row(event, "workflow completed")


def _workflow_failed(event: HistoryEvent, _: _Context) -> HistoryRow:
    error = failure_text(event.workflow_execution_failed_event_attributes.failure)
    return _row(event, "workflow failed", detail=error, error=error)


def _workflow_timed_out(event: HistoryEvent, _: _Context) -> HistoryRow:
    return _row(event, "workflow timed out")


def _workflow_terminated(event: HistoryEvent, _: _Context) -> HistoryRow:
    reason = event.workflow_execution_terminated_event_attributes.reason
    return _row(event, "workflow terminated", detail=reason)


def _workflow_cancel_requested(event: HistoryEvent, _: _Context) -> HistoryRow:
    reason = event.workflow_execution_cancel_requested_event_attributes.cause
    return _row(event, "workflow cancel requested", detail=reason)


def _workflow_canceled(event: HistoryEvent, _: _Context) -> HistoryRow:
    return _row(event, "workflow cancelled")


def _continued_as_new(event: HistoryEvent, _: _Context) -> HistoryRow:
    # The history grew past the flow's limit: the next run goes on with the flow's state.
    run_id = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return _row(event, "workflow continued as new", detail=f"next run {run_id}")


def _workflow_task_failed(event: HistoryEvent, _: _Context) -> HistoryRow:
    # A bug or a non-deterministic change in the workflow code: the flow is stuck until fixed.
    attrs = event.workflow_task_failed_event_attributes
    error = failure_text(attrs.failure)
    cause = WorkflowTaskFailedCause.Name(attrs.cause).removeprefix("WORKFLOW_TASK_FAILED_CAUSE_")
    return _row(event, "workflow task failed", name=cause.lower(), detail=error, error=error)


def _signaled(event: HistoryEvent, _: _Context) -> HistoryRow:
    name = event.workflow_execution_signaled_event_attributes.signal_name
    return _row(event, "signal received", name=name)


def _update_accepted(event: HistoryEvent, _: _Context) -> HistoryRow:
    name = event.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
    return _row(event, "update accepted", name=name)


def _search_attributes(event: HistoryEvent, _: _Context) -> HistoryRow:
    fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
    # Only the names: values are payloads, and the flow keeps personal data out of them anyway.
    return _row(event, "search attributes set", detail=", ".join(sorted(fields.indexed_fields)))


# --- timers --------------------------------------------------------------------------------


def _timer_started(event: HistoryEvent, context: _Context) -> HistoryRow:
    duration = event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
    context.timers[event.event_id] = (duration, _time(event))
    fires = _time(event) + duration
    return _row(
        event,
        "timer started",
        name=duration_text(duration),
        detail=f"fires at {_clock(fires)}",
    )


def _timer_fired(event: HistoryEvent, context: _Context) -> HistoryRow:
    started = context.timers.get(event.timer_fired_event_attributes.started_event_id)
    return _timer_ended(event, "timer fired", started, "set at {start}")


def _timer_canceled(event: HistoryEvent, context: _Context) -> HistoryRow:
    # The flow sleeps on a condition with a timeout: a signal (recovery, cancel) ends it early.
    started = context.timers.get(event.timer_canceled_event_attributes.started_event_id)
    return _timer_ended(event, "timer cancelled", started, "set at {start}; the flow woke early")


def _timer_ended(
    event: HistoryEvent, what: str, started: tuple[timedelta, datetime] | None, detail: str
) -> HistoryRow:
    if started is None:
        return _row(event, what)
    duration, start = started
    return _row(
        event, what, name=duration_text(duration), detail=detail.format(start=_clock(start))
    )


def _clock(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


# --- activities ----------------------------------------------------------------------------


def _activity_scheduled(event: HistoryEvent, context: _Context) -> HistoryRow:
    attrs = event.activity_task_scheduled_event_attributes
    context.activity_names[event.event_id] = attrs.activity_type.name
    attempts = attrs.retry_policy.maximum_attempts
    detail = f"up to {attempts} attempts" if attempts else "retried until it succeeds"
    return _row(event, "activity scheduled", name=attrs.activity_type.name, detail=detail)


def _activity_started(event: HistoryEvent, context: _Context) -> HistoryRow | None:
    # Temporal writes the started event once, when the last attempt ends, carrying its number
    # and the failure of the attempt before it: earlier retries leave no events of their own.
    # A first attempt says nothing the completed or failed row does not, so it gets no row.
    attrs = event.activity_task_started_event_attributes
    context.attempts[attrs.scheduled_event_id] = attrs.attempt
    if attrs.attempt <= 1:
        return None
    error = failure_text(attrs.last_failure) if attrs.HasField("last_failure") else None
    return _row(
        event,
        "activity retried",
        name=context.activity_names.get(attrs.scheduled_event_id, ""),
        detail=f"attempt {attrs.attempt}"
        + (f"; the attempt before failed: {error}" if error else ""),
        attempt=attrs.attempt,
        error=error,
    )


def _activity_completed(event: HistoryEvent, context: _Context) -> HistoryRow:
    scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
    attempt = context.attempts.get(scheduled)
    detail = f"after {attempt} attempts" if attempt and attempt > 1 else ""
    name = context.activity_names.get(scheduled, "")
    return _row(event, "activity completed", name=name, detail=detail, attempt=attempt)


def _activity_failed(event: HistoryEvent, context: _Context) -> HistoryRow:
    attrs = event.activity_task_failed_event_attributes
    return _activity_gave_up(
        event,
        context,
        "activity failed",
        attrs.scheduled_event_id,
        failure=attrs.failure,
        retry_state=attrs.retry_state,
    )


def _activity_timed_out(event: HistoryEvent, context: _Context) -> HistoryRow:
    attrs = event.activity_task_timed_out_event_attributes
    return _activity_gave_up(
        event,
        context,
        "activity timed out",
        attrs.scheduled_event_id,
        failure=attrs.failure,
        retry_state=attrs.retry_state,
    )


def _activity_gave_up(
    event: HistoryEvent,
    context: _Context,
    what: str,
    scheduled: int,
    *,
    failure: Failure,
    retry_state: "RetryState.ValueType",
) -> HistoryRow:
    """A failed or timed-out activity: the flow's retries for it are over."""
    attempt = context.attempts.get(scheduled)
    error = failure_text(failure)
    state = _RETRY_STATES.get(retry_state, "")
    detail = f"{error} ({state})" if state else error
    name = context.activity_names.get(scheduled, "")
    return _row(event, what, name=name, detail=detail, attempt=attempt, error=error)


_RETRY_STATES = {
    RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE: "not retryable",
    RetryState.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED: "no attempts left",
    RetryState.RETRY_STATE_TIMEOUT: "retry time used up",
    RetryState.RETRY_STATE_CANCEL_REQUESTED: "cancelled",
}


def _activity_cancel_requested(event: HistoryEvent, context: _Context) -> HistoryRow:
    scheduled = event.activity_task_cancel_requested_event_attributes.scheduled_event_id
    name = context.activity_names.get(scheduled, "")
    return _row(event, "activity cancel requested", name=name)


def _activity_canceled(event: HistoryEvent, context: _Context) -> HistoryRow:
    scheduled = event.activity_task_canceled_event_attributes.scheduled_event_id
    return _row(event, "activity cancelled", name=context.activity_names.get(scheduled, ""))


def _generic(event: HistoryEvent, _: _Context) -> HistoryRow:
    """Any other event, by its type's name: shown rather than hidden, but not interpreted."""
    name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    return _row(event, name.lower().replace("_", " "))


_Describer = Callable[[HistoryEvent, _Context], HistoryRow | None]
_DESCRIBERS: dict[int, _Describer] = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: _workflow_started,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: _workflow_completed,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: _workflow_failed,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: _workflow_timed_out,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: _workflow_terminated,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED: _workflow_cancel_requested,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: _workflow_canceled,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: _continued_as_new,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: _workflow_task_failed,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: _signaled,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: _update_accepted,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: _search_attributes,
    EventType.EVENT_TYPE_TIMER_STARTED: _timer_started,
    EventType.EVENT_TYPE_TIMER_FIRED: _timer_fired,
    EventType.EVENT_TYPE_TIMER_CANCELED: _timer_canceled,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: _activity_scheduled,
    EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: _activity_started,
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: _activity_completed,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: _activity_failed,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: _activity_timed_out,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED: _activity_cancel_requested,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: _activity_canceled,
}


# --- texts ---------------------------------------------------------------------------------


def failure_text(failure: Failure) -> str:
    """A failure's message with its type, then its causes: "Type: message <- Type: message"."""
    parts: list[str] = []
    current: Failure | None = failure
    while current is not None:
        is_application = current.HasField("application_failure_info")
        kind = current.application_failure_info.type if is_application else ""
        message = current.message or "(no message)"
        parts.append(f"{kind}: {message}" if kind else message)
        current = current.cause if current.HasField("cause") else None
    return " <- ".join(parts)


def duration_text(duration: timedelta) -> str:
    """Policy-file spelling ("1h30m"); seconds with decimals below a minute, since a flow's timer
    often waits for the rest of a delay ("0.25s")."""
    seconds = duration.total_seconds()
    if seconds >= 60:
        return format_duration(timedelta(seconds=round(seconds)))
    return f"{seconds:.3g}s" if seconds != int(seconds) else format_duration(duration)


async def decode_failure_messages(events: Iterable[HistoryEvent], converter: DataConverter) -> None:
    """Put the readable message into every failure whose message was encrypted (codec keys on).

    With encryption, the message Temporal keeps is a placeholder and the real one is in the
    failure's encoded attributes; this decodes them in place with the connected client's
    converter. Failures without encoded attributes are left as they are.
    """
    for event in events:
        for failure in _failures(event):
            current: Failure | None = failure
            while current is not None:
                if current.HasField("encoded_attributes"):
                    decoded = await converter.decode_failure(_shallow_copy(current))
                    if isinstance(decoded, FailureError):
                        current.message = decoded.message
                    current.ClearField("encoded_attributes")
                current = current.cause if current.HasField("cause") else None


def _shallow_copy(failure: Failure) -> Failure:
    copied = Failure()
    copied.CopyFrom(failure)
    copied.ClearField("cause")  # each failure of the chain is decoded on its own
    return copied


def _failures(event: HistoryEvent) -> list[Failure]:
    take = _FAILURE_FIELDS.get(event.event_type)
    return [take(event)] if take else []


# Where each kind of event keeps its failure. An unset field reads as an empty Failure, which
# has nothing to decode.
_FAILURE_FIELDS: dict[int, Callable[[HistoryEvent], Failure]] = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: lambda e: (
        e.activity_task_failed_event_attributes.failure
    ),
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: lambda e: (
        e.activity_task_timed_out_event_attributes.failure
    ),
    EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: lambda e: (
        e.activity_task_started_event_attributes.last_failure
    ),
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: lambda e: (
        e.workflow_execution_failed_event_attributes.failure
    ),
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: lambda e: (
        e.workflow_task_failed_event_attributes.failure
    ),
}
