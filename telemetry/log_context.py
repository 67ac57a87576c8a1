"""Which checkout, flow and step a log line is about, wherever the line is written.

Three sources, most specific first: a step activity's own request (bound by
`LogContextInterceptor` for the length of the activity), the SDK's workflow and activity loggers
(their `temporal_workflow` / `temporal_activity` extras), and the service layer's
`checkout_logged` block around work on one checkout. All are ids: a checkout id is our opaque
hash and the workflow id is derived from it (domain.flow), so neither carries buyer data.
"""

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from domain.flow import WORKFLOW_ID_PREFIX, workflow_id_for
from domain.steps import StepRequest


@dataclass(frozen=True)
class LogContext:
    checkout_id: str | None = None
    workflow_id: str | None = None
    step: int | None = None
    """1-based, as operators and the timeline count steps."""

    def merged_over(self, other: "LogContext") -> "LogContext":
        """This context, with what it does not know taken from `other`."""
        return LogContext(
            checkout_id=self.checkout_id or other.checkout_id,
            workflow_id=self.workflow_id or other.workflow_id,
            step=self.step if self.step is not None else other.step,
        )

    def completed(self) -> "LogContext":
        """Each id derived from the other when only one is known."""
        if self.checkout_id and not self.workflow_id:
            return replace(self, workflow_id=workflow_id_for(self.checkout_id))
        if self.workflow_id and not self.checkout_id:
            checkout_id = checkout_id_of(self.workflow_id)
            return replace(self, checkout_id=checkout_id) if checkout_id else self
        return self


_NOTHING = LogContext()
_bound: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "checkout_recovery_log_context", default=None
)


@contextlib.contextmanager
def checkout_logged(checkout_id: str | None, *, step: int | None = None) -> Iterator[None]:
    """Log lines written inside the block (and in tasks it starts) name this checkout."""
    outer = _bound.get() or _NOTHING
    token = _bound.set(LogContext(checkout_id=checkout_id, step=step).merged_over(outer))
    try:
        yield
    finally:
        _bound.reset(token)


def checkout_id_of(workflow_id: str) -> str | None:
    """The checkout of a recovery flow's workflow id; None for other workflows."""
    if workflow_id.startswith(WORKFLOW_ID_PREFIX):
        return workflow_id[len(WORKFLOW_ID_PREFIX) :]
    return None


def current_log_context(record_extra: Mapping[str, Any]) -> LogContext:
    """What is known about the line being written, from its record's attributes
    (`record.__dict__`) and from where it is written."""
    found = _bound.get() or _NOTHING
    sdk_workflow = record_extra.get("temporal_workflow")
    if isinstance(sdk_workflow, Mapping):
        found = LogContext(workflow_id=_text(sdk_workflow.get("workflow_id"))).merged_over(found)
    sdk_activity = record_extra.get("temporal_activity")
    if isinstance(sdk_activity, Mapping):
        found = LogContext(workflow_id=_text(sdk_activity.get("workflow_id"))).merged_over(found)
    elif activity.in_activity():
        # Our own modules log through logging.getLogger, not activity.logger: the activity's
        # info is still there to be read.
        found = LogContext(workflow_id=activity.info().workflow_id).merged_over(found)
    return found.completed()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class LogContextInterceptor(Interceptor):
    """Binds a step activity's checkout and step for its log lines (a worker interceptor)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityLogContext(next)


class _ActivityLogContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        request = input.args[0] if input.args else None
        if isinstance(request, StepRequest):
            checkout_id: str | None = request.checkout_id
            step: int | None = request.step_index + 1
        else:
            found = getattr(request, "checkout_id", None)
            checkout_id, step = (found if isinstance(found, str) else None), None
        if checkout_id is None and step is None:
            return await self.next.execute_activity(input)
        with checkout_logged(checkout_id, step=step):
            return await self.next.execute_activity(input)
