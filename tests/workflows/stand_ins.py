"""Stand-in activities for workflow-only tests, registered under the real activity names.

In the samples-python way: the real workflow runs on the time-skipping server against these,
which keep every request they get and answer as the activity contract in domain/steps.py says,
with no store and no SMTP. A test scripts an answer (a deferral, a failure) per activity name,
for the next calls or for all of them.
"""

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.activity import ActivityEntry, ActivityType, NotSentReason
from domain.steps import (
    CREATE_TASK,
    PERMANENT_EMAIL_FAILURE,
    RECORD_ACTIVITY,
    RECORD_RECOVERY,
    SEND_EMAIL,
    SEND_NOTIFICATION,
    EmailStepRequest,
    EmailStepResult,
    NotificationStepRequest,
    RecordActivityRequest,
    RecordRecoveryRequest,
    StepRequest,
    TaskStepRequest,
)

Answer = Callable[[Any], Any]
"""What a stand-in does with one request: returns the activity's result, or raises."""
RequestT = TypeVar("RequestT", bound=BaseModel)


@dataclass(frozen=True)
class Call:
    """One attempt of one activity, as the stand-in saw it."""

    name: str
    request: BaseModel
    attempt: int
    schedule_to_close: timedelta | None


def _entry(request: StepRequest, kind: ActivityType) -> ActivityEntry:
    return ActivityEntry(created_date=request.at, type=kind, step=request.step_index + 1)


def email_sent(request: EmailStepRequest) -> EmailStepResult:
    """The real activity's answer to a send the relay took: EMAIL_SENT at the step's time."""
    return EmailStepResult(
        type=ActivityType.EMAIL_SENT,
        created_date=request.at,
        step=request.step_index + 1,
        consent=request.consent,
    )


def deferred_until(moment: Callable[[EmailStepRequest], datetime]) -> Answer:
    """The answer while the frequency cap holds: nothing recorded, try again at
    `moment(request)`."""

    def answer(request: EmailStepRequest) -> EmailStepResult:
        return email_sent(request).model_copy(
            update={
                "type": ActivityType.EMAIL_NOT_SENT,
                "reason": NotSentReason.FREQUENCY_CAPPED,
                "deferred_until": moment(request),
            }
        )

    return answer


def permanent_email_failure(*details: str) -> Answer:
    """The relay refused for good: the non-retryable error the real activity raises."""

    def answer(request: EmailStepRequest) -> EmailStepResult:
        raise ApplicationError(
            "refused by the stand-in", *details, type=PERMANENT_EMAIL_FAILURE, non_retryable=True
        )

    return answer


def raising(error: Callable[[], BaseException]) -> Answer:
    """Fail every time with a fresh `error()`."""

    def answer(request: Any) -> Any:
        raise error()

    return answer


class StandIns:
    """The five activities the workflow calls, each keeping what it was asked."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._next: dict[str, list[Answer]] = defaultdict(list)
        self._always: dict[str, Answer] = {}
        self._changed = asyncio.Event()

    def then(self, name: str, *answers: Answer) -> None:
        """Answer the next calls of `name` with these, one each, then as before."""
        self._next[name].extend(answers)

    def always(self, name: str, answer: Answer) -> None:
        self._always[name] = answer

    @property
    def activities(self) -> Sequence[Callable[..., Any]]:
        return [
            self.send_email,
            self.send_notification,
            self.create_task,
            self.record_activity,
            self.record_recovery,
        ]

    # --- what the tests read -----------------------------------------------------------------

    def requests(self, name: str, kind: type[RequestT]) -> list[RequestT]:
        found = [c.request for c in self.calls if c.name == name]
        assert all(isinstance(r, kind) for r in found)
        return [r for r in found if isinstance(r, kind)]

    @property
    def emails(self) -> list[EmailStepRequest]:
        return self.requests(SEND_EMAIL, EmailStepRequest)

    @property
    def notifications(self) -> list[NotificationStepRequest]:
        return self.requests(SEND_NOTIFICATION, NotificationStepRequest)

    @property
    def tasks(self) -> list[TaskStepRequest]:
        return self.requests(CREATE_TASK, TaskStepRequest)

    @property
    def records(self) -> list[RecordActivityRequest]:
        return self.requests(RECORD_ACTIVITY, RecordActivityRequest)

    @property
    def recoveries(self) -> list[RecordRecoveryRequest]:
        return self.requests(RECORD_RECOVERY, RecordRecoveryRequest)

    @property
    def names(self) -> list[str]:
        """Every attempt's activity name, in the order the attempts came."""
        return [c.name for c in self.calls]

    async def called(self, name: str, times: int = 1, timeout: float = 10.0) -> None:
        """Wait (wall clock) until `name` was called `times` times; the test server's clock
        stays where it is meanwhile."""

        async def enough() -> None:
            while self.names.count(name) < times:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{name} was called {self.names.count(name)} times, not {times}: {self.names}"
            ) from None

    # --- the stand-ins -----------------------------------------------------------------------

    def _answer(self, name: str, request: BaseModel, default: Answer) -> Any:
        info = activity.info()
        self.calls.append(Call(name, request, info.attempt, info.schedule_to_close_timeout))
        self._changed.set()
        queued = self._next[name]
        answer = queued.pop(0) if queued else self._always.get(name, default)
        return answer(request)

    @activity.defn(name=SEND_EMAIL)
    async def send_email(self, request: EmailStepRequest) -> EmailStepResult:
        result: EmailStepResult = self._answer(SEND_EMAIL, request, email_sent)
        return result

    @activity.defn(name=SEND_NOTIFICATION)
    async def send_notification(self, request: NotificationStepRequest) -> ActivityEntry:
        result: ActivityEntry = self._answer(
            SEND_NOTIFICATION, request, lambda r: _entry(r, ActivityType.NOTIFICATION_SENT)
        )
        return result

    @activity.defn(name=CREATE_TASK)
    async def create_task(self, request: TaskStepRequest) -> ActivityEntry:
        result: ActivityEntry = self._answer(
            CREATE_TASK, request, lambda r: _entry(r, ActivityType.TASK_CREATED)
        )
        return result

    @activity.defn(name=RECORD_ACTIVITY)
    async def record_activity(self, request: RecordActivityRequest) -> None:
        self._answer(RECORD_ACTIVITY, request, lambda r: None)

    @activity.defn(name=RECORD_RECOVERY)
    async def record_recovery(self, request: RecordRecoveryRequest) -> None:
        self._answer(RECORD_RECOVERY, request, lambda r: None)
