"""Every branch of the recovery workflow, in milliseconds: the real AbandonedCheckoutWorkflow on
the time-skipping server against stand-in activities (tests/workflows/stand_ins.py) registered
under the real activity names, in the samples-python way.

The tests drive the flow only through its input, its signals and the answers of its activities,
and check what it asked of them (requests, keys, times), the entries it keeps and its result.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.activity import ActivityEntry, ActivityType, NotSentReason
from domain.checkout import AbandonedCheckout, CheckoutStatus, Price
from domain.durations import parse_duration
from domain.flow import (
    BUYER_PURCHASED_SIGNAL,
    CANCEL_SIGNAL,
    CHECKOUT_UPDATED_SIGNAL,
    RECOVERED_SIGNAL,
    UNSUBSCRIBED_SIGNAL,
    ClosedBecause,
    RecoveredSignal,
    RecoveryInput,
    RecoveryResult,
    step_key,
    workflow_id_for,
)
from domain.policy import RecoveryPolicy, parse_policy
from domain.steps import (
    CREATE_TASK,
    RECORD_ACTIVITY,
    RECORD_RECOVERY,
    SEND_EMAIL,
    SEND_NOTIFICATION,
    EmailStepRequest,
    NotificationStepRequest,
    RecordActivityRequest,
    RecordRecoveryRequest,
    TaskStepRequest,
)
from tests.support import sample_checkout
from tests.workflows.stand_ins import (
    StandIns,
    deferred_until,
    email_sent,
    permanent_email_failure,
    raising,
)
from workers.worker import SANDBOX_RUNNER
from workflows.abandoned_checkout import AbandonedCheckoutWorkflow

CHECKOUT_ID = "c-branches"
WORKFLOW_ID = workflow_id_for(CHECKOUT_ID)
TOLERANCE = timedelta(seconds=1)
"""A timer fires at its due time on the test server; the workflow task that acts on it follows
within milliseconds of wall time, which the server's clock counts too."""
HOOK = "https://hooks.shop.test/staff"
TOKYO = ZoneInfo("Asia/Tokyo")


def _policy(*steps: dict[str, Any], **keys: Any) -> RecoveryPolicy:
    return parse_policy({"name": "branches", "listen_window": "0s", **keys, "steps": steps}, "t")


def _email(delay: str | timedelta, template: str = "reminder", **keys: Any) -> dict[str, Any]:
    return {"delay": delay, "action": "email", "template": template, **keys}


def _notification(delay: str | timedelta, **keys: Any) -> dict[str, Any]:
    return {"delay": delay, "action": "notification", "url": HOOK, **keys}


def _task(delay: str | timedelta, **keys: Any) -> dict[str, Any]:
    return {"delay": delay, "action": "task", "assignee": "sales", **keys}


def _close_to(moment: datetime | None, expected: datetime) -> bool:
    return moment is not None and abs(moment - expected) < TOLERANCE


def _entry(
    kind: ActivityType,
    at: datetime,
    step: int | None = None,
    reason: str | None = None,
    consent: str | None = None,
) -> ActivityEntry:
    return ActivityEntry(type=kind, created_date=at, step=step, reason=reason, consent=consent)


@dataclass
class Flow:
    """One running flow, its stand-ins and the clock it started on."""

    env: WorkflowEnvironment
    stand_ins: StandIns
    handle: WorkflowHandle[Any, RecoveryResult]
    policy: RecoveryPolicy
    abandoned_at: datetime
    reported_at: datetime

    def due(self, delay: timedelta | str) -> datetime:
        return self.abandoned_at + (
            delay if isinstance(delay, timedelta) else parse_duration(delay)
        )

    async def signal(self, name: str, arg: Any = None) -> None:
        if arg is None:
            await self.handle.signal(name)
        else:
            await self.handle.signal(name, arg)

    async def skip(self, duration: timedelta) -> datetime:
        """Move the test server's clock on by `duration`; the moment reached."""
        await self.env.sleep(duration)
        return await self.env.get_current_time()

    async def finish(self) -> tuple[RecoveryResult, datetime]:
        """The flow's result (time skips meanwhile) and the moment it closed."""
        result = await self.handle.result()
        closed = (await self.handle.describe()).close_time
        assert closed is not None
        return result, closed

    async def checkout(self) -> AbandonedCheckout:
        return await self.handle.query(AbandonedCheckoutWorkflow.checkout)

    async def entries(self) -> list[ActivityEntry]:
        return (await self.checkout()).activities

    def assert_entries_close(self, got: list[ActivityEntry], expected: list[ActivityEntry]) -> None:
        """Entries equal but for their times, which must lie within TOLERANCE."""
        assert len(got) == len(expected), (got, expected)
        for entry, wanted in zip(got, expected, strict=True):
            assert _close_to(entry.created_date, wanted.created_date), (entry, wanted)
            assert entry.model_copy(update={"created_date": wanted.created_date}) == wanted

    def email(
        self, number: int, at: datetime, consent: str = "not_required", zone: str = "UTC"
    ) -> EmailStepRequest:
        """The request email step `number` should make at `at`."""
        step = self.policy.steps[number - 1]
        return EmailStepRequest.model_validate(
            {
                "checkout_id": CHECKOUT_ID,
                "workflow_id": WORKFLOW_ID,
                "step_index": number - 1,
                "key": step_key(WORKFLOW_ID, number - 1),
                "at": at,
                "step": step,
                "frequency_cap": self.policy.frequency_cap,
                "consent": consent,
                "time_zone": zone,
            }
        )

    def not_sent(
        self, number: int, at: datetime, reason: str, consent: str | None = None
    ) -> RecordActivityRequest:
        return RecordActivityRequest(
            checkout_id=CHECKOUT_ID,
            key=step_key(WORKFLOW_ID, number - 1),
            entry=_entry(ActivityType.EMAIL_NOT_SENT, at, number, reason, consent),
        )


def assert_requests(got: list[Any], expected: list[Any]) -> None:
    """Requests equal but for their times (`at`, or a record's entry time), within TOLERANCE."""
    assert len(got) == len(expected), (got, expected)
    for request, wanted in zip(got, expected, strict=True):
        if isinstance(wanted, RecordActivityRequest):
            assert isinstance(request, RecordActivityRequest)
            assert _close_to(request.entry.created_date, wanted.entry.created_date), (
                request,
                wanted,
            )
            entry = request.entry.model_copy(update={"created_date": wanted.entry.created_date})
            assert request.model_copy(update={"entry": entry}) == wanted
        else:
            assert _close_to(request.at, wanted.at), (request, wanted)
            assert request.model_copy(update={"at": wanted.at}) == wanted


@asynccontextmanager
async def running(
    env: WorkflowEnvironment,
    policy: RecoveryPolicy,
    *,
    stand_ins: StandIns | None = None,
    checkout: AbandonedCheckout | None = None,
    abandoned_ago: timedelta = timedelta(0),
    now: datetime | None = None,
    start_signal: str | None = None,
    start_signal_args: list[Any] | None = None,
) -> AsyncIterator[Flow]:
    """Start the real workflow, reported `now` (the server's clock) `abandoned_ago` after its
    abandonment, on a worker with nothing but the stand-ins; `start_signal` comes with the
    start (signal-with-start), before the flow's first line of `run`."""
    stand_ins = stand_ins or StandIns()
    reported = now or await env.get_current_time()
    abandoned = reported - abandoned_ago
    snapshot = (checkout or sample_checkout()).model_copy(
        update={"id": CHECKOUT_ID, "created_date": abandoned}
    )
    task_queue = f"branches-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[AbandonedCheckoutWorkflow],
        activities=stand_ins.activities,
        workflow_runner=SANDBOX_RUNNER,
    ):
        handle = await env.client.start_workflow(
            AbandonedCheckoutWorkflow.run,
            RecoveryInput(
                checkout=snapshot, policy=policy, abandoned_at=abandoned, reported_at=reported
            ),
            id=WORKFLOW_ID,
            task_queue=task_queue,
            start_signal=start_signal,
            start_signal_args=start_signal_args or [],
        )
        yield Flow(env, stand_ins, handle, policy, abandoned, reported)


def _window_elapsed(steps_run: int) -> RecoveryResult:
    return RecoveryResult(
        status=CheckoutStatus.ABANDONED,
        closed_because=ClosedBecause.WINDOW_ELAPSED,
        steps_run=steps_run,
    )


# --- the plain run ---------------------------------------------------------------------------


async def test_steps_run_in_order_at_their_delays_then_the_listen_window_elapses(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    policy = _policy(_email("1h"), _notification("3h"), _task("1d"), listen_window="2h")
    async with running(time_skipping_env, policy) as flow:
        result, closed = await flow.finish()
        entries = await flow.entries()

    ins = flow.stand_ins
    assert ins.names == [SEND_EMAIL, SEND_NOTIFICATION, CREATE_TASK]
    assert_requests(ins.emails, [flow.email(1, flow.due("1h"))])
    common = {"checkout_id": CHECKOUT_ID, "workflow_id": WORKFLOW_ID}
    assert_requests(
        ins.notifications,
        [
            NotificationStepRequest(
                **common,
                step_index=1,
                key=f"{WORKFLOW_ID}/step-2",
                at=flow.due("3h"),
                step=policy.steps[1],
            )
        ],
    )
    assert_requests(
        ins.tasks,
        [
            TaskStepRequest(
                **common,
                step_index=2,
                key=f"{WORKFLOW_ID}/step-3",
                at=flow.due("1d"),
                step=policy.steps[2],
            )
        ],
    )
    # Each step's activity records its own entry; the flow keeps what they answered.
    flow.assert_entries_close(
        entries,
        [
            _entry(ActivityType.SCHEDULED, flow.reported_at),
            _entry(ActivityType.EMAIL_SENT, flow.due("1h"), 1, consent="not_required"),
            _entry(ActivityType.NOTIFICATION_SENT, flow.due("3h"), 2),
            _entry(ActivityType.TASK_CREATED, flow.due("1d"), 3),
        ],
    )
    assert result == _window_elapsed(steps_run=3)
    assert _close_to(closed, flow.due("1d") + timedelta(hours=2)), closed


async def test_without_a_listen_window_the_flow_closes_at_its_last_step(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    async with running(time_skipping_env, _policy(_email("1h"), _email("5h"))) as flow:
        result, closed = await flow.finish()

    assert result == _window_elapsed(steps_run=2)
    assert_requests(
        flow.stand_ins.emails, [flow.email(1, flow.due("1h")), flow.email(2, flow.due("5h"))]
    )
    assert _close_to(closed, flow.due("5h"))


# --- stops: recovered, cancelled, bought elsewhere ------------------------------------------


async def test_recovery_between_steps_stops_the_flow_and_records_the_recovery(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    policy = _policy(_email("1h"), _email("5h"), _task("6h"), listen_window="7d")
    async with running(time_skipping_env, policy) as flow:
        await flow.skip(timedelta(hours=2))
        await flow.stand_ins.called(SEND_EMAIL)
        bought_at = flow.due("90m")
        await flow.signal(
            RECOVERED_SIGNAL, RecoveredSignal(order_id="order-7", recovered_at=bought_at)
        )
        result, closed = await flow.finish()
        checkout = await flow.checkout()

    ins = flow.stand_ins
    assert ins.names == [SEND_EMAIL, RECORD_RECOVERY]  # nothing sent after the signal
    assert ins.recoveries == [
        RecordRecoveryRequest(checkout_id=CHECKOUT_ID, recovered_at=bought_at, order_id="order-7")
    ]
    assert result == RecoveryResult(
        status=CheckoutStatus.RECOVERED,
        closed_because=ClosedBecause.RECOVERED,
        steps_run=1,
        recovered_at=bought_at,
    )
    assert _close_to(closed, flow.due("2h"))  # at the signal, not at step 2 or a window's end
    assert (checkout.status, checkout.checkout_recovered_date, checkout.order_id) == (
        CheckoutStatus.RECOVERED,
        bought_at,
        "order-7",
    )


async def test_recovery_before_the_first_step_sends_nothing_and_the_first_signal_counts(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    async with running(time_skipping_env, _policy(_email("1h"), listen_window="1d")) as flow:
        await flow.signal(RECOVERED_SIGNAL, RecoveredSignal(order_id="order-1"))
        await flow.signal(RECOVERED_SIGNAL, RecoveredSignal(order_id="order-2"))
        result, closed = await flow.finish()

    [recovery] = flow.stand_ins.recoveries
    assert flow.stand_ins.names == [RECORD_RECOVERY]
    # No time given: the flow's own clock at the signal.
    assert _close_to(recovery.recovered_at, flow.reported_at)
    assert recovery == RecordRecoveryRequest(
        checkout_id=CHECKOUT_ID, recovered_at=recovery.recovered_at, order_id="order-1"
    )
    assert result == RecoveryResult(
        status=CheckoutStatus.RECOVERED,
        closed_because=ClosedBecause.RECOVERED,
        steps_run=0,
        recovered_at=recovery.recovered_at,
    )
    assert _close_to(closed, flow.reported_at)


@pytest.mark.parametrize(
    ("signal", "closed_because"),
    [
        (CANCEL_SIGNAL, ClosedBecause.CANCELLED),
        (BUYER_PURCHASED_SIGNAL, ClosedBecause.BUYER_PURCHASED),
    ],
)
async def test_a_stop_signal_between_steps_ends_the_flow_unrecovered(
    time_skipping_env: WorkflowEnvironment, signal: str, closed_because: ClosedBecause
) -> None:
    policy = _policy(_email("1h"), _notification("5h"), _email("1d"), listen_window="7d")
    async with running(time_skipping_env, policy) as flow:
        await flow.skip(timedelta(hours=2))
        await flow.stand_ins.called(SEND_EMAIL)
        await flow.signal(signal)
        result, closed = await flow.finish()

    assert flow.stand_ins.names == [SEND_EMAIL]  # no later step, no recovery written
    assert result == RecoveryResult(
        status=CheckoutStatus.ABANDONED, closed_because=closed_because, steps_run=1
    )
    assert _close_to(closed, flow.due("2h"))


@pytest.mark.parametrize(
    ("signal", "arg", "closed_because"),
    [
        (RECOVERED_SIGNAL, RecoveredSignal(order_id="o-9"), ClosedBecause.RECOVERED),
        (CANCEL_SIGNAL, None, ClosedBecause.CANCELLED),
        (BUYER_PURCHASED_SIGNAL, None, ClosedBecause.BUYER_PURCHASED),
    ],
)
async def test_the_listen_window_after_the_last_step_still_takes_a_stop(
    time_skipping_env: WorkflowEnvironment, signal: str, arg: Any, closed_because: ClosedBecause
) -> None:
    async with running(time_skipping_env, _policy(_email("1h"), listen_window="3d")) as flow:
        signalled = await flow.skip(timedelta(days=2))
        await flow.stand_ins.called(SEND_EMAIL)
        await flow.signal(signal, arg)
        result, closed = await flow.finish()

    assert result.closed_because == closed_because
    assert result.steps_run == 1
    recovered = closed_because is ClosedBecause.RECOVERED
    assert flow.stand_ins.names == [SEND_EMAIL, *([RECORD_RECOVERY] if recovered else [])]
    assert _close_to(closed, signalled), (closed, signalled)
    if recovered:
        assert _close_to(result.recovered_at, signalled)
        assert result.status == CheckoutStatus.RECOVERED


# --- the buyer's wishes ----------------------------------------------------------------------


async def test_after_unsubscribing_later_emails_record_not_sent_and_staff_steps_go_on(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    policy = _policy(_email("1h"), _email("5h"), _notification("6h"), _email("1d"))
    async with running(time_skipping_env, policy) as flow:
        await flow.skip(timedelta(hours=2))
        await flow.stand_ins.called(SEND_EMAIL)
        await flow.signal(UNSUBSCRIBED_SIGNAL)
        result, closed = await flow.finish()
        entries = await flow.entries()

    ins = flow.stand_ins
    assert ins.names == [SEND_EMAIL, RECORD_ACTIVITY, SEND_NOTIFICATION, RECORD_ACTIVITY]
    assert_requests(ins.emails, [flow.email(1, flow.due("1h"))])
    unsubscribed = NotSentReason.UNSUBSCRIBED
    assert_requests(
        ins.records,
        [
            flow.not_sent(2, flow.due("5h"), unsubscribed, "not_required"),
            flow.not_sent(4, flow.due("1d"), unsubscribed, "not_required"),
        ],
    )
    assert [(e.type, e.step, e.reason) for e in entries] == [
        (ActivityType.SCHEDULED, None, None),
        (ActivityType.EMAIL_SENT, 1, None),
        (ActivityType.EMAIL_NOT_SENT, 2, unsubscribed),
        (ActivityType.NOTIFICATION_SENT, 3, None),
        (ActivityType.EMAIL_NOT_SENT, 4, unsubscribed),
    ]
    assert result == _window_elapsed(steps_run=4)
    assert _close_to(closed, flow.due("1d"))


async def test_an_unsubscribe_that_comes_with_the_start_holds_for_the_first_email(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """The signal's handler runs before `run` begins: the flow's state must already exist."""
    policy = _policy(_email("1h"), _task("2h"))
    async with running(time_skipping_env, policy, start_signal=UNSUBSCRIBED_SIGNAL) as flow:
        result, _ = await flow.finish()

    assert flow.stand_ins.names == [RECORD_ACTIVITY, CREATE_TASK]
    assert_requests(
        flow.stand_ins.records,
        [flow.not_sent(1, flow.due("1h"), NotSentReason.UNSUBSCRIBED, "not_required")],
    )
    assert result == _window_elapsed(steps_run=2)


@pytest.mark.parametrize(
    ("mode", "subscribed", "outcomes"),
    [
        ("all", None, ["not_required", "not_required"]),
        ("first_email_only", None, ["first_email", "refused"]),
        ("first_email_only", True, ["subscriber", "subscriber"]),
        ("subscribers_only", False, ["refused", "refused"]),
        ("subscribers_only", True, ["subscriber", "subscriber"]),
    ],
)
async def test_consent_decides_each_email_and_travels_with_it(
    time_skipping_env: WorkflowEnvironment,
    mode: str,
    subscribed: bool | None,
    outcomes: list[str],
) -> None:
    policy = _policy(_email("1h"), _email("5h"), consent=mode)
    checkout = sample_checkout(marketingConsent=subscribed)
    async with running(time_skipping_env, policy, checkout=checkout) as flow:
        result, _ = await flow.finish()

    dues = [flow.due("1h"), flow.due("5h")]
    sent = [
        flow.email(n, due, consent)
        for n, (due, consent) in enumerate(zip(dues, outcomes, strict=True), 1)
        if consent != "refused"
    ]
    refused = [
        flow.not_sent(n, due, NotSentReason.NO_CONSENT, "refused")
        for n, (due, consent) in enumerate(zip(dues, outcomes, strict=True), 1)
        if consent == "refused"
    ]
    assert_requests(flow.stand_ins.emails, sent)
    assert_requests(flow.stand_ins.records, refused)
    assert result == _window_elapsed(steps_run=2)


async def test_first_email_only_counts_the_first_email_that_reaches_the_buyer_decision(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """A first email ruled out by its conditions is no first email: the second one is."""
    policy = _policy(
        _email("1h", conditions={"min_total": "1000"}),
        _email("5h"),
        _email("1d"),
        consent="first_email_only",
    )
    async with running(time_skipping_env, policy) as flow:
        await flow.finish()

    assert_requests(flow.stand_ins.emails, [flow.email(2, flow.due("5h"), "first_email")])
    assert_requests(
        flow.stand_ins.records,
        [
            flow.not_sent(1, flow.due("1h"), "condition_failed:min_total"),
            flow.not_sent(3, flow.due("1d"), NotSentReason.NO_CONSENT, "refused"),
        ],
    )


# --- steps the policy rules out --------------------------------------------------------------


async def test_a_step_whose_conditions_fail_is_skipped_and_the_next_runs(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    # The sample checkout: EUR 89.90, an English-speaking visitor without a phone.
    policy = _policy(
        _email("1h", conditions={"min_total": "100", "languages": ["de"]}),
        _notification("2h", conditions={"buyer": "member"}),
        _task("3h", conditions={"has_phone": True}),
        _email("4h", conditions={"max_total": "100", "currencies": ["EUR"], "buyer": "visitor"}),
    )
    async with running(time_skipping_env, policy) as flow:
        result, _ = await flow.finish()
        entries = await flow.entries()

    ins = flow.stand_ins
    # Staff steps have no "not done" entry for a failed condition: nothing is called for them.
    assert ins.names == [RECORD_ACTIVITY, SEND_EMAIL]
    assert_requests(
        ins.records, [flow.not_sent(1, flow.due("1h"), "condition_failed:min_total,languages")]
    )
    assert_requests(ins.emails, [flow.email(4, flow.due("4h"))])
    assert [(e.type, e.step) for e in entries] == [
        (ActivityType.SCHEDULED, None),
        (ActivityType.EMAIL_NOT_SENT, 1),
        (ActivityType.EMAIL_SENT, 4),
    ]
    assert result == _window_elapsed(steps_run=4)


async def test_a_checkout_in_the_holdout_gets_nothing_but_not_sent_entries_at_the_due_times(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    policy = _policy(
        _email("1h"), _notification("2h"), _email("3h"), holdout_percent=100, listen_window="1h"
    )
    async with running(time_skipping_env, policy) as flow:
        result, closed = await flow.finish()

    assert flow.stand_ins.names == [RECORD_ACTIVITY, RECORD_ACTIVITY]
    assert_requests(
        flow.stand_ins.records,
        [
            flow.not_sent(1, flow.due("1h"), NotSentReason.HOLDOUT),
            flow.not_sent(3, flow.due("3h"), NotSentReason.HOLDOUT),
        ],
    )
    assert result == _window_elapsed(steps_run=3)
    assert _close_to(closed, flow.due("4h"))  # the holdout still keeps the schedule and listens


async def test_a_stale_report_records_every_email_at_once_and_only_listens(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    # Step 3 would be due two days from now: a stale flow does not wait for it either.
    policy = _policy(_email("1h"), _task("2h"), _email("5d"), max_age="1d", listen_window="2h")
    async with running(time_skipping_env, policy, abandoned_ago=timedelta(days=3)) as flow:
        result, closed = await flow.finish()

    reported = flow.reported_at
    assert flow.stand_ins.names == [RECORD_ACTIVITY, RECORD_ACTIVITY]
    assert_requests(
        flow.stand_ins.records,
        [
            flow.not_sent(1, reported, NotSentReason.STALE_REPORT),
            flow.not_sent(3, reported, NotSentReason.STALE_REPORT),
        ],
    )
    assert result == _window_elapsed(steps_run=3)
    assert _close_to(closed, reported + timedelta(hours=2))


async def test_a_stale_report_recovered_while_it_listens_closes_as_recovered(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    policy = _policy(_email("1h"), max_age="1d", listen_window="7d")
    async with running(time_skipping_env, policy, abandoned_ago=timedelta(days=3)) as flow:
        await flow.skip(timedelta(hours=1))
        await flow.signal(RECOVERED_SIGNAL, RecoveredSignal())
        result, _ = await flow.finish()

    assert flow.stand_ins.names == [RECORD_ACTIVITY, RECORD_RECOVERY]
    assert result.closed_because == ClosedBecause.RECOVERED
    assert result.steps_run == 1


@pytest.mark.parametrize(
    ("signal", "args", "closed_because"),
    [
        (RECOVERED_SIGNAL, [RecoveredSignal(order_id="o-3")], ClosedBecause.RECOVERED),
        (CANCEL_SIGNAL, [], ClosedBecause.CANCELLED),
        (BUYER_PURCHASED_SIGNAL, [], ClosedBecause.BUYER_PURCHASED),
    ],
)
async def test_a_stale_report_stopped_at_the_start_records_no_step(
    time_skipping_env: WorkflowEnvironment,
    signal: str,
    args: list[Any],
    closed_because: ClosedBecause,
) -> None:
    """No wait to be stopped in: the stale flow itself checks for a stop before each step
    (patch "stale-report-stops")."""
    policy = _policy(_email("1h"), _task("2h"), _email("5d"), max_age="1d", listen_window="7d")
    async with running(
        time_skipping_env,
        policy,
        abandoned_ago=timedelta(days=3),
        start_signal=signal,
        start_signal_args=args,
    ) as flow:
        result, closed = await flow.finish()

    recovered = closed_because is ClosedBecause.RECOVERED
    assert flow.stand_ins.names == ([RECORD_RECOVERY] if recovered else [])
    assert (result.closed_because, result.steps_run) == (closed_because, 0)
    assert _close_to(closed, flow.reported_at)


@pytest.mark.parametrize("overdue_steps", ["skip", "run"])
async def test_a_step_already_due_when_reported_is_skipped_or_run_at_once(
    time_skipping_env: WorkflowEnvironment, overdue_steps: str
) -> None:
    policy = _policy(_email("1h"), _email("5h"), overdue_steps=overdue_steps)
    async with running(time_skipping_env, policy, abandoned_ago=timedelta(hours=2)) as flow:
        result, closed = await flow.finish()

    reported = flow.reported_at
    step_two = flow.email(2, flow.due("5h"))
    if overdue_steps == "skip":
        assert_requests(flow.stand_ins.emails, [step_two])
        assert_requests(flow.stand_ins.records, [flow.not_sent(1, reported, NotSentReason.OVERDUE)])
    else:
        assert_requests(flow.stand_ins.emails, [flow.email(1, reported), step_two])
        assert flow.stand_ins.records == []
    assert result == _window_elapsed(steps_run=2)
    assert _close_to(closed, flow.due("5h"))  # step 2 keeps its own due time


# --- when emails may go out ------------------------------------------------------------------


def _next_local(after: datetime, hour: int, zone: ZoneInfo) -> datetime:
    """The first `hour`:00 in `zone` strictly after `after`."""
    local = after.astimezone(zone)
    moment = datetime.combine(local.date(), time(hour), tzinfo=zone)
    while moment <= local:
        moment += timedelta(days=1)
    return moment.astimezone(UTC)


async def test_an_email_due_outside_the_send_window_waits_for_its_opening_in_the_buyers_zone(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    now = await env.get_current_time()
    evening = _next_local(now + timedelta(hours=1), 20, TOKYO)  # 20:00 in Tokyo
    delay = evening - now
    policy = _policy(
        _notification(delay),
        _email(delay),
        send_window={"start": "09:00", "end": "17:00"},
        time_zone="UTC",  # the shop's zone; the buyer's own one wins
    )
    checkout = sample_checkout(buyerTimeZone="Asia/Tokyo")
    async with running(env, policy, checkout=checkout, now=now) as flow:
        result, closed = await flow.finish()

    opening = _next_local(evening, 9, TOKYO)
    assert opening - evening == timedelta(hours=13)
    [notification] = flow.stand_ins.notifications
    assert _close_to(notification.at, evening)  # staff steps ignore the send window
    assert_requests(flow.stand_ins.emails, [flow.email(2, opening, zone="Asia/Tokyo")])
    assert result == _window_elapsed(steps_run=2)
    assert _close_to(closed, opening)


async def test_a_capped_email_is_sent_when_the_cap_ends_and_recorded_only_then(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    stand_ins = StandIns()
    stand_ins.then(SEND_EMAIL, deferred_until(lambda r: r.at + timedelta(hours=24)))
    policy = _policy(_email("1h"), _email("2d"), frequency_cap={"window": "24h"})
    async with running(time_skipping_env, policy, stand_ins=stand_ins) as flow:
        result, _ = await flow.finish()
        entries = await flow.entries()

    capped_until = flow.due("25h")
    assert_requests(
        flow.stand_ins.emails,
        [flow.email(1, flow.due("1h")), flow.email(1, capped_until), flow.email(2, flow.due("2d"))],
    )
    assert flow.stand_ins.records == []  # the deferral itself is recorded nowhere
    flow.assert_entries_close(
        entries,
        [
            _entry(ActivityType.SCHEDULED, flow.reported_at),
            _entry(ActivityType.EMAIL_SENT, capped_until, 1, consent="not_required"),
            _entry(ActivityType.EMAIL_SENT, flow.due("2d"), 2, consent="not_required"),
        ],
    )
    assert result == _window_elapsed(steps_run=2)


async def test_a_capped_email_whose_cap_ends_outside_the_send_window_waits_for_the_opening(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    now = await env.get_current_time()
    morning = _next_local(now + timedelta(hours=1), 10, ZoneInfo("UTC"))
    evening = morning + timedelta(hours=8)  # 18:00, after the window closed
    stand_ins = StandIns()
    stand_ins.then(SEND_EMAIL, deferred_until(lambda r: evening))
    policy = _policy(_email(morning - now), send_window={"start": "09:00", "end": "17:00"})
    async with running(env, policy, stand_ins=stand_ins, now=now) as flow:
        await flow.finish()

    next_opening = morning + timedelta(hours=23)  # 09:00 the day after
    assert_requests(flow.stand_ins.emails, [flow.email(1, morning), flow.email(1, next_opening)])


async def test_a_flow_stopped_while_a_capped_email_waits_sends_nothing_more(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    stand_ins = StandIns()
    stand_ins.then(SEND_EMAIL, deferred_until(lambda r: r.at + timedelta(hours=24)))
    policy = _policy(_email("1h"), _email("2d"), listen_window="7d")
    async with running(time_skipping_env, policy, stand_ins=stand_ins) as flow:
        await flow.skip(timedelta(hours=3))
        await flow.stand_ins.called(SEND_EMAIL)
        await flow.signal(RECOVERED_SIGNAL, RecoveredSignal(order_id="o-1"))
        result, closed = await flow.finish()

    assert flow.stand_ins.names == [SEND_EMAIL, RECORD_RECOVERY]
    # The deferred step never ran, so it does not count.
    assert (result.closed_because, result.steps_run) == (ClosedBecause.RECOVERED, 0)
    assert _close_to(closed, flow.due("3h"))


async def test_an_unsubscribe_while_a_capped_email_waits_records_it_not_sent_and_goes_on(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Patch "unsubscribe-during-deferral": refused at the unsubscribe, with the consent it had,
    as at a decision; the later steps keep their own due times."""
    stand_ins = StandIns()
    stand_ins.then(SEND_EMAIL, deferred_until(lambda r: r.at + timedelta(hours=24)))
    policy = _policy(_email("1h"), _notification("5h"), _email("2d"), consent="first_email_only")
    async with running(time_skipping_env, policy, stand_ins=stand_ins) as flow:
        unsubscribed_at = await flow.skip(timedelta(hours=3))
        await flow.stand_ins.called(SEND_EMAIL)
        await flow.signal(UNSUBSCRIBED_SIGNAL)
        result, closed = await flow.finish()
        entries = await flow.entries()

    ins = flow.stand_ins
    assert ins.names == [SEND_EMAIL, RECORD_ACTIVITY, SEND_NOTIFICATION, RECORD_ACTIVITY]
    assert_requests(ins.emails, [flow.email(1, flow.due("1h"), "first_email")])
    unsubscribed = NotSentReason.UNSUBSCRIBED
    assert_requests(
        ins.records,
        [
            flow.not_sent(1, unsubscribed_at, unsubscribed, "first_email"),
            flow.not_sent(3, flow.due("2d"), unsubscribed, "refused"),
        ],
    )
    [notification] = ins.notifications
    assert _close_to(notification.at, flow.due("5h"))  # not held by the cap's wait
    assert [(e.type, e.step, e.reason) for e in entries[1:]] == [
        (ActivityType.EMAIL_NOT_SENT, 1, unsubscribed),
        (ActivityType.NOTIFICATION_SENT, 2, None),
        (ActivityType.EMAIL_NOT_SENT, 3, unsubscribed),
    ]
    assert result == _window_elapsed(steps_run=3)
    assert _close_to(closed, flow.due("2d"))


# --- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("details", "reason"),
    [
        (("invalid_address",), "invalid_address"),
        (("template_error",), "template_error"),
        ((), NotSentReason.SMTP_REJECTED),
    ],
)
async def test_a_permanent_email_failure_records_not_sent_with_its_reason_and_goes_on(
    time_skipping_env: WorkflowEnvironment, details: tuple[str, ...], reason: str
) -> None:
    stand_ins = StandIns()
    stand_ins.then(SEND_EMAIL, permanent_email_failure(*details))
    async with running(
        time_skipping_env, _policy(_email("1h"), _email("5h")), stand_ins=stand_ins
    ) as flow:
        result, _ = await flow.finish()
        entries = await flow.entries()

    ins = flow.stand_ins
    assert ins.names == [SEND_EMAIL, RECORD_ACTIVITY, SEND_EMAIL]  # not retried
    assert_requests(ins.emails, [flow.email(1, flow.due("1h")), flow.email(2, flow.due("5h"))])
    assert_requests(ins.records, [flow.not_sent(1, flow.due("1h"), reason, "not_required")])
    assert [(e.type, e.reason) for e in entries[1:]] == [
        (ActivityType.EMAIL_NOT_SENT, reason),
        (ActivityType.EMAIL_SENT, None),
    ]
    assert result == _window_elapsed(steps_run=2)


async def test_a_permanent_failure_type_is_not_retried_even_when_not_marked_so(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """The email retry policy itself lists the type as non-retryable."""
    stand_ins = StandIns()
    stand_ins.then(
        SEND_EMAIL,
        raising(lambda: ApplicationError("550", "invalid_address", type="PermanentEmailFailure")),
    )
    async with running(time_skipping_env, _policy(_email("1h")), stand_ins=stand_ins) as flow:
        await flow.finish()

    assert flow.stand_ins.names == [SEND_EMAIL, RECORD_ACTIVITY]
    assert flow.stand_ins.records[0].entry.reason == "invalid_address"


async def test_an_unreachable_relay_is_retried_until_the_next_step_is_due_then_recorded(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    def relay_down_for_step_one(request: EmailStepRequest) -> Any:
        if request.step_index == 0:
            raise ConnectionRefusedError("relay down")
        return email_sent(request)

    stand_ins = StandIns()
    stand_ins.always(SEND_EMAIL, relay_down_for_step_one)
    policy = _policy(_email("1h"), _email("90m"), send_retry_window="6h")
    async with running(time_skipping_env, policy, stand_ins=stand_ins) as flow:
        result, _ = await flow.finish()

    ins = flow.stand_ins
    first = [
        c
        for c in ins.calls
        if isinstance(c.request, EmailStepRequest) and c.request.step_index == 0
    ]
    assert len(first) > 5
    assert [c.attempt for c in first] == list(range(1, len(first) + 1))
    # The retry window is cut at step 2's due time: a later reminder must not overtake it.
    # (Counted from the flow's clock at the step, a few milliseconds past its due time.)
    [deadline] = {c.schedule_to_close for c in first}
    assert deadline is not None
    assert timedelta(minutes=30) - TOLERANCE < deadline <= timedelta(minutes=30)
    assert_requests(
        ins.records,
        [flow.not_sent(1, flow.due("1h"), NotSentReason.SMTP_UNAVAILABLE, "not_required")],
    )
    [step_two] = [r for r in ins.emails if r.step_index == 1]
    assert_requests([step_two], [flow.email(2, flow.due("90m"))])
    assert result == _window_elapsed(steps_run=2)


async def test_the_retry_window_is_cut_when_the_next_email_will_run_in_its_send_window(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Patch "retry-window-to-next-send": step 2 comes due at 18:00, after the window closed, so
    it runs at 09:00 the next day; step 1 may retry its whole 6h window, not only until 18:00."""
    env = time_skipping_env
    now = await env.get_current_time()
    afternoon = _next_local(now + timedelta(hours=1), 16, ZoneInfo("UTC"))
    stand_ins = StandIns()
    stand_ins.then(SEND_EMAIL, raising(lambda: ConnectionRefusedError("relay down")))
    policy = _policy(
        _email(afternoon - now),
        _email(afternoon + timedelta(hours=2) - now),
        send_window={"start": "09:00", "end": "17:00"},
        send_retry_window="6h",
    )
    async with running(env, policy, stand_ins=stand_ins, now=now) as flow:
        result, _ = await flow.finish()

    first, second, _ = flow.stand_ins.calls
    assert (first.name, first.attempt, second.attempt) == (SEND_EMAIL, 1, 2)
    assert first.schedule_to_close is not None
    assert timedelta(hours=6) - TOLERANCE < first.schedule_to_close <= timedelta(hours=6)
    next_opening = afternoon + timedelta(hours=17)  # 09:00 the day after
    assert_requests(
        flow.stand_ins.emails,
        [flow.email(1, afternoon), flow.email(1, afternoon), flow.email(2, next_opening)],
    )
    assert result == _window_elapsed(steps_run=2)


def _refusing() -> ApplicationError:
    return ApplicationError(
        "endpoint answered 410", type="NotificationRejected", non_retryable=True
    )


def _flaky() -> RuntimeError:
    return RuntimeError("endpoint answered 503")


@pytest.mark.parametrize(
    ("name", "step", "error", "attempts"),
    [
        (SEND_NOTIFICATION, _notification("1h"), _refusing, 1),
        (SEND_NOTIFICATION, _notification("1h"), _flaky, 8),  # the webhook retry budget
        (CREATE_TASK, _task("1h"), _refusing, 1),
    ],
)
async def test_a_staff_step_that_fails_for_good_leaves_no_entry_and_the_flow_goes_on(
    time_skipping_env: WorkflowEnvironment,
    name: str,
    step: dict[str, Any],
    error: Callable[[], BaseException],
    attempts: int,
) -> None:
    stand_ins = StandIns()
    stand_ins.always(name, raising(error))
    async with running(time_skipping_env, _policy(step, _email("2h")), stand_ins=stand_ins) as flow:
        result, _ = await flow.finish()
        entries = await flow.entries()

    ins = flow.stand_ins
    assert ins.names == [name] * attempts + [SEND_EMAIL]
    assert [c.attempt for c in ins.calls if c.name == name] == list(range(1, attempts + 1))
    assert_requests(ins.emails, [flow.email(2, flow.due("2h"))])
    assert [e.type for e in entries] == [ActivityType.SCHEDULED, ActivityType.EMAIL_SENT]
    assert result == _window_elapsed(steps_run=2)


@pytest.mark.parametrize(
    ("signal", "arg", "closed_because"),
    [
        (RECOVERED_SIGNAL, RecoveredSignal(order_id="o-5"), ClosedBecause.RECOVERED),
        (CANCEL_SIGNAL, None, ClosedBecause.CANCELLED),
        (BUYER_PURCHASED_SIGNAL, None, ClosedBecause.BUYER_PURCHASED),
    ],
)
async def test_a_stop_ends_a_task_step_that_keeps_failing(
    time_skipping_env: WorkflowEnvironment, signal: str, arg: Any, closed_because: ClosedBecause
) -> None:
    """A task retries without limit (a database outage must not fail it); a stop signal
    cancels it (patch "stop-cancels-staff-step"), and the step does not count."""
    stand_ins = StandIns()
    stand_ins.always(CREATE_TASK, raising(lambda: RuntimeError("a bug in the task store")))
    policy = _policy(_task("1h"), _email("2h"), listen_window="7d")
    async with running(time_skipping_env, policy, stand_ins=stand_ins) as flow:
        await flow.skip(timedelta(minutes=70))
        await flow.stand_ins.called(CREATE_TASK, 3)
        stopped_at = await flow.env.get_current_time()
        await flow.signal(signal, arg)
        result, closed = await asyncio.wait_for(flow.finish(), 20)

    ins = flow.stand_ins
    recovered = closed_because is ClosedBecause.RECOVERED
    attempts = ins.names.count(CREATE_TASK)
    assert ins.names == [CREATE_TASK] * attempts + ([RECORD_RECOVERY] if recovered else [])
    assert (result.closed_because, result.steps_run) == (closed_because, 0)
    assert _close_to(closed, stopped_at)


# --- cart updates ----------------------------------------------------------------------------


def _updated(at: datetime, amount: str) -> AbandonedCheckout:
    """The shop's newer snapshot: another total, its own updatedDate."""
    return sample_checkout(
        totalPrice={"amount": amount, "formattedAmount": f"€{amount}"},
        updatedDate=at.isoformat(),
    )


async def test_a_cart_update_under_reset_moves_every_later_step(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    policy = _policy(_email("1h"), _email("5h"), on_cart_update="reset")
    async with running(time_skipping_env, policy) as flow:
        updated = await flow.skip(timedelta(minutes=30))
        await flow.signal(CHECKOUT_UPDATED_SIGNAL, _updated(updated, "120.00"))
        result, closed = await flow.finish()
        checkout = await flow.checkout()

    # Delays now count from the update.
    step_one, step_two = updated + timedelta(hours=1), updated + timedelta(hours=5)
    assert_requests(flow.stand_ins.emails, [flow.email(1, step_one), flow.email(2, step_two)])
    assert result == _window_elapsed(steps_run=2)
    assert _close_to(closed, step_two)
    assert checkout.total_price == Price(amount="120.00", formatted_amount="€120.00")
    # The record's identity and history stay the flow's.
    assert (checkout.id, checkout.created_date) == (CHECKOUT_ID, flow.abandoned_at)
    assert [e.type for e in checkout.activities] == [
        ActivityType.SCHEDULED,
        ActivityType.EMAIL_SENT,
        ActivityType.EMAIL_SENT,
    ]


async def test_a_cart_update_under_keep_leaves_the_schedule_but_conditions_see_the_new_cart(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    policy = _policy(_email("1h"), _email("5h", conditions={"min_total": "100"}))
    async with running(time_skipping_env, policy) as flow:
        updated = await flow.skip(timedelta(hours=2))
        await flow.stand_ins.called(SEND_EMAIL)
        await flow.signal(CHECKOUT_UPDATED_SIGNAL, _updated(updated, "150.00"))
        result, _ = await flow.finish()

    # 89.90 at first would fail min_total; the update's 150.00 passes it.
    assert_requests(
        flow.stand_ins.emails, [flow.email(1, flow.due("1h")), flow.email(2, flow.due("5h"))]
    )
    assert flow.stand_ins.records == []
    assert result == _window_elapsed(steps_run=2)


async def test_a_repeated_or_older_cart_update_is_ignored(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    policy = _policy(_email("1h"), _email("5h"), on_cart_update="reset")
    async with running(time_skipping_env, policy) as flow:
        updated = await flow.skip(timedelta(minutes=30))
        newer = _updated(updated, "120.00")
        await flow.signal(CHECKOUT_UPDATED_SIGNAL, newer)
        await flow.skip(timedelta(minutes=15))
        await flow.signal(CHECKOUT_UPDATED_SIGNAL, newer)  # delivered twice
        older = _updated(updated - timedelta(minutes=20), "99.00")
        await flow.signal(CHECKOUT_UPDATED_SIGNAL, older)  # a late copy of an earlier change
        result, _ = await flow.finish()
        checkout = await flow.checkout()

    # Had either moved the anchor, step 1 would be due at 1h45m.
    assert_requests(
        flow.stand_ins.emails,
        [flow.email(1, updated + timedelta(hours=1)), flow.email(2, updated + timedelta(hours=5))],
    )
    assert checkout.total_price.amount == "120.00"
    assert result == _window_elapsed(steps_run=2)


async def test_an_undated_update_repeating_the_cart_the_flow_holds_is_ignored(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """The service dates every update; a signal sent straight to Temporal may not. Patch
    "dedupe-undated-updates": the same cart again changes nothing, a changed one still counts."""
    policy = _policy(_email("1h"), _email("5h"), on_cart_update="reset")
    undated = sample_checkout(totalPrice={"amount": "120.00", "formattedAmount": "€120.00"})
    assert undated.updated_date is None
    async with running(time_skipping_env, policy) as flow:
        updated = await flow.skip(timedelta(minutes=30))
        await flow.signal(CHECKOUT_UPDATED_SIGNAL, undated)
        await flow.skip(timedelta(minutes=15))
        await flow.signal(CHECKOUT_UPDATED_SIGNAL, undated)  # delivered again
        await flow.skip(timedelta(hours=1))
        await flow.stand_ins.called(SEND_EMAIL)
        changed = await flow.env.get_current_time()
        smaller = undated.model_copy(update={"line_items": undated.line_items[:1]})
        await flow.signal(CHECKOUT_UPDATED_SIGNAL, smaller)  # undated, but another cart
        result, _ = await flow.finish()
        checkout = await flow.checkout()

    # Had the repeat moved the anchor, step 1 would be due at 1h45m.
    assert_requests(
        flow.stand_ins.emails,
        [flow.email(1, updated + timedelta(hours=1)), flow.email(2, changed + timedelta(hours=5))],
    )
    assert (checkout.total_price.amount, len(checkout.line_items)) == ("120.00", 1)
    assert result == _window_elapsed(steps_run=2)
