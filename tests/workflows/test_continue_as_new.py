"""Long-lived flows stay small: a flow that takes many cart updates continues as new with its
state (patch "continue-as-new"), and its steps still run once, at their due times, on the newest
cart. The real workflow on the time-skipping server against the stand-in activities, as in
tests/workflows/test_workflow_branches.py.
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from cli.history_summary import summarise_history
from domain.activity import ActivityType, NotSentReason
from domain.checkout import AbandonedCheckout, CheckoutStatus, Price
from domain.flow import (
    CHECKOUT_UPDATED_SIGNAL,
    RECOVERED_SIGNAL,
    UNSUBSCRIBED_SIGNAL,
    ClosedBecause,
    RecoveredSignal,
    RecoveryResult,
    step_key,
    workflow_id_for,
)
from domain.steps import CREATE_TASK, RECORD_RECOVERY, SEND_EMAIL, SEND_NOTIFICATION
from service.flow_runs import fetch_flow_history
from store.sql import SqlStore
from tests.support import (
    SmtpServer,
    default_policy_any_hour,
    engine_settings,
    running_engine,
    sample_checkout,
)
from tests.workflows.scenarios import flow_result, report_now, skip_past_first_step
from tests.workflows.test_workflow_branches import (
    TOLERANCE,
    WORKFLOW_ID,
    Flow,
    _email,
    _notification,
    _policy,
    _task,
    running,
)
from workflows.abandoned_checkout import HISTORY_LIMIT, AbandonedCheckoutWorkflow

HISTORY_BOUND = HISTORY_LIMIT + 100
"""The most events one run may hold: the limit, plus what comes before the run can close. A
continue-as-new completes only when no signal reached the server during the workflow task
that asks for it (else the server refuses it, so that no signal is lost, and the flow asks
again), so a burst of updates keeps the run open until the burst pauses, each update adding 2
to 6 events; the boundary test's burst is 40 updates."""
UPDATES = 500


def _cart(at: datetime, number: int) -> AbandonedCheckout:
    """Update `number` of the shop's cart: a total of its own (100.00 + number), its own date."""
    amount = f"{100 + number}.00"
    return sample_checkout(
        totalPrice={"amount": amount, "formattedAmount": f"€{amount}"},
        updatedDate=(at + timedelta(milliseconds=number)).isoformat(),
    )


@dataclass(frozen=True)
class Run:
    """One run of the flow's chain."""

    run_id: str
    status: WorkflowExecutionStatus | None
    events: list[HistoryEvent]


async def _runs(client: Client, workflow_id: str = WORKFLOW_ID) -> list[Run]:
    """The flow's runs, oldest first: from the latest, each run's first event names the run it
    continued."""
    runs: list[Run] = []
    run_id: str | None = None
    while True:
        described = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        handle = client.get_workflow_handle(workflow_id, run_id=described.run_id)
        events = list((await handle.fetch_history()).events)
        runs.insert(0, Run(described.run_id, described.status, events))
        started = events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return runs
        run_id = started.continued_execution_run_id


def _latest(flow: Flow) -> WorkflowHandle[Any, RecoveryResult]:
    """The flow by its workflow ID alone, as the hand-off signals it: its latest run. (The
    handle the start returned names the first run, which is closed once it continued.)"""
    return flow.env.client.get_workflow_handle(WORKFLOW_ID, result_type=RecoveryResult)


async def _query_latest(flow: Flow) -> AbandonedCheckout:
    """The checkout the latest run holds. Asked of that run by its id: the time-skipping server
    may hand a query by workflow ID to the run before for a moment after a continue-as-new
    that it first refused (a new signal overtook it), which answers with that run's state."""
    described = await _latest(flow).describe()
    handle = flow.env.client.get_workflow_handle(WORKFLOW_ID, run_id=described.run_id)
    return await handle.query(AbandonedCheckoutWorkflow.checkout, rpc_timeout=timedelta(seconds=2))


async def _signal(flow: Flow, name: str, arg: Any = None) -> None:
    handle = _latest(flow)
    if arg is None:
        await handle.signal(name)
    else:
        await handle.signal(name, arg)


async def _finish(flow: Flow) -> tuple[RecoveryResult, datetime, AbandonedCheckout]:
    """The flow's result (time skips meanwhile, across its runs), when its last run closed, and
    the checkout that run holds."""
    result = await flow.handle.result()
    closed = (await _latest(flow).describe()).close_time
    assert closed is not None
    return result, closed, await _query_latest(flow)


async def _send_updates(flow: Flow, since: datetime, numbers: range) -> None:
    """Update after update, as fast as the server takes them, but one at a time (each once
    the flow took the one before) while the run is near its limit.

    Not a stream racing the continue-as-new: the time-skipping server, unlike Temporal's own,
    mishandles a continue-as-new that it refused for a signal that overtook it (the run closes
    without its last events, and signals and queries by workflow ID go to the closed run for a
    while). The burst test has that race on purpose, once.
    """
    for number in numbers:
        await _signal(flow, CHECKOUT_UPDATED_SIGNAL, _cart(since, number))
        if (await _latest(flow).describe()).history_length >= HISTORY_LIMIT - 40:
            await _settled(flow)


async def _settled(flow: Flow) -> None:
    await _settled_handle(_latest(flow))


async def _settled_handle(latest: WorkflowHandle[Any, Any]) -> None:
    """Until the flow's history stops growing: the worker has taken every signal so far.
    Watched through describe: a query is a workflow task too, and races like a signal."""
    seen = (-1, "")
    while True:
        described = await latest.describe()
        now = (described.history_length, described.run_id)
        if now == seen:
            return
        seen = now
        await asyncio.sleep(0.05)


async def _until_continued(flow: Flow, since: datetime, first: int = 0) -> int:
    """Send updates one at a time until the flow has continued as new; the next number."""
    number = first
    while True:
        await _send_updates(flow, since, range(number, number + 5))
        number += 5
        if (await _latest(flow).describe()).run_id != flow.handle.first_execution_run_id:
            return number
        assert number < 2 * HISTORY_LIMIT, "the flow never continued as new"


def _assert_bounded(runs: list[Run]) -> None:
    """At least one continue-as-new, every run within HISTORY_BOUND events, the last one
    closed for good. (Sizes as fetched: the time-skipping server may leave out the last few
    events of a run it continued after refusing it once, never more than a workflow task's.)"""
    sizes = [len(run.events) for run in runs]
    assert len(runs) >= 2, sizes
    assert all(size <= HISTORY_BOUND for size in sizes), sizes
    continued = WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert [run.status for run in runs[:-1]] == [continued] * (len(runs) - 1), sizes
    assert runs[-1].status is WorkflowExecutionStatus.COMPLETED, sizes


async def test_500_cart_updates_keep_each_run_small_and_the_steps_run_once_on_the_last_cart(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    # Step 3 runs only for the last cart's total (100 + 499); a cart update under "keep" leaves
    # the schedule where it was.
    last = f"{100 + UPDATES - 1}.00"
    policy = _policy(
        _email("1h"),
        _notification("3h"),
        _email("5h", conditions={"min_total": last}),
        listen_window="1h",
    )
    async with running(time_skipping_env, policy) as flow:
        since = await flow.skip(timedelta(hours=2))
        await flow.stand_ins.called(SEND_EMAIL)
        await _send_updates(flow, since, range(UPDATES))
        # A late copy of an early update, after the flow continued: the dedupe holds across.
        await _signal(flow, CHECKOUT_UPDATED_SIGNAL, _cart(since, 10))
        result, closed, checkout = await _finish(flow)
        runs = await _runs(time_skipping_env.client)

    _assert_bounded(runs)
    emails, notifications = flow.stand_ins.emails, flow.stand_ins.notifications
    assert [(e.step_index, e.key) for e in emails] == [
        (0, step_key(WORKFLOW_ID, 0)),
        (2, step_key(WORKFLOW_ID, 2)),
    ]
    assert [n.step_index for n in notifications] == [1]
    assert flow.stand_ins.names.count(SEND_EMAIL) == 2
    assert flow.stand_ins.names.count(SEND_NOTIFICATION) == 1
    assert flow.stand_ins.records == []
    assert abs(emails[1].at - flow.due("5h")) < TOLERANCE
    assert abs(notifications[0].at - flow.due("3h")) < TOLERANCE
    assert abs(closed - (flow.due("5h") + timedelta(hours=1))) < TOLERANCE
    assert result == RecoveryResult(
        status=CheckoutStatus.ABANDONED, closed_because=ClosedBecause.WINDOW_ELAPSED, steps_run=3
    )
    assert checkout.total_price.amount == last
    assert [e.type for e in checkout.activities] == [
        ActivityType.SCHEDULED,
        ActivityType.EMAIL_SENT,
        ActivityType.NOTIFICATION_SENT,
        ActivityType.EMAIL_SENT,
    ]
    # Operators read every run: `checkouts history` shows where the flow continued.
    events = await fetch_flow_history(time_skipping_env.client, WORKFLOW_ID)
    assert len(events) == sum(len(run.events) for run in runs)
    starts = [r for r in summarise_history(events) if r.event == "workflow started"]
    # Each later run says which run it continues.
    continues = [row.detail.rsplit(" ", 1)[-1] for row in starts[1:]]
    assert continues == [run.run_id for run in runs[:-1]]


async def test_a_recovery_at_the_continue_as_new_boundary_stops_the_flow(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Updates and the recovery all at once, the last of them pushing the history past its
    limit: whichever run takes the recovery (the old one before it continues, or the new one),
    it is not lost, and nothing more is sent."""
    policy = _policy(_email("1h"), _email("5h"), listen_window="1h")
    async with running(time_skipping_env, policy) as flow:
        since = await flow.skip(timedelta(hours=2))
        await flow.stand_ins.called(SEND_EMAIL)
        # Just short of the limit (some 4 events an update), then the rest with the recovery.
        await _send_updates(flow, since, range(HISTORY_LIMIT // 4 - 10))
        burst = [
            _signal(flow, CHECKOUT_UPDATED_SIGNAL, _cart(since, number))
            for number in range(HISTORY_LIMIT // 4 - 10, HISTORY_LIMIT // 4 + 30)
        ]
        burst.insert(20, _signal(flow, RECOVERED_SIGNAL, RecoveredSignal(order_id="order-7")))
        await asyncio.gather(*burst)
        result, _, _ = await _finish(flow)
        runs = await _runs(time_skipping_env.client)

    assert all(len(run.events) <= HISTORY_BOUND for run in runs), [len(r.events) for r in runs]
    assert result.closed_because == ClosedBecause.RECOVERED
    assert result.steps_run == 1
    assert [e.step_index for e in flow.stand_ins.emails] == [0]
    assert [r.order_id for r in flow.stand_ins.recoveries] == ["order-7"]


async def test_a_recovery_right_after_the_flow_continued_reaches_the_new_run(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    policy = _policy(_email("1h"), _email("5h"), listen_window="1h")
    async with running(time_skipping_env, policy) as flow:
        since = await flow.skip(timedelta(hours=2))
        await flow.stand_ins.called(SEND_EMAIL)
        await _until_continued(flow, since)
        await _signal(flow, RECOVERED_SIGNAL, RecoveredSignal(order_id="order-8"))
        result, _, _ = await _finish(flow)
        runs = await _runs(time_skipping_env.client)

    _assert_bounded(runs)
    assert result.closed_because == ClosedBecause.RECOVERED
    assert [e.step_index for e in flow.stand_ins.emails] == [0]
    assert flow.stand_ins.names.count(RECORD_RECOVERY) == 1


async def test_a_flow_continued_while_a_step_waits_runs_it_at_the_same_due_time(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Under on_cart_update = "reset" the last update moves the due times; the new run waits
    for the time the old one waited for (not a fresh delay, not the original due time), and
    keeps the unsubscribe the old run was told of."""
    policy = _policy(_email("1h"), _task("4h"), _email("6h"), on_cart_update="reset")
    async with running(time_skipping_env, policy) as flow:
        start = await flow.skip(timedelta(minutes=70))
        await flow.stand_ins.called(SEND_EMAIL)
        await _signal(flow, UNSUBSCRIBED_SIGNAL)
        await flow.skip(timedelta(minutes=30))
        number = await _until_continued(flow, start)
        last_update = await flow.env.get_current_time()
        # The new run's first signal: a late copy of an update the run before applied.
        await _signal(flow, CHECKOUT_UPDATED_SIGNAL, _cart(start, 3))
        # Well into the wait for step 2, in the new run.
        await flow.skip(timedelta(hours=1))
        result, _, checkout = await _finish(flow)
        runs = await _runs(time_skipping_env.client)

    _assert_bounded(runs)
    assert checkout.total_price == _cart(start, number - 1).total_price
    tasks = flow.stand_ins.tasks
    assert [t.step_index for t in tasks] == [1]
    assert flow.stand_ins.names.count(CREATE_TASK) == 1
    assert abs(tasks[0].at - (last_update + timedelta(hours=4))) < 3 * TOLERANCE
    # Step 3 is refused: the unsubscribe came before the flow continued.
    assert [e.step_index for e in flow.stand_ins.emails] == [0]
    [refused] = flow.stand_ins.records
    assert (refused.key, refused.entry.reason) == (
        step_key(WORKFLOW_ID, 2),
        NotSentReason.UNSUBSCRIBED,
    )
    assert abs(refused.entry.created_date - (last_update + timedelta(hours=6))) < 3 * TOLERANCE
    assert result.steps_run == 3


async def test_a_flow_continued_while_it_listens_closes_when_the_window_it_had_ends(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    policy = _policy(_email("1h"), listen_window="12h")
    async with running(time_skipping_env, policy) as flow:
        since = await flow.skip(timedelta(hours=2))
        await flow.stand_ins.called(SEND_EMAIL)
        await _until_continued(flow, since)
        result, closed, _ = await _finish(flow)
        runs = await _runs(time_skipping_env.client)

    _assert_bounded(runs)
    assert abs(closed - (flow.due("1h") + timedelta(hours=12))) < TOLERANCE
    assert result.steps_run == 1
    assert flow.stand_ins.names.count(SEND_EMAIL) == 1


# --- on real parts -----------------------------------------------------------------------


async def test_no_email_is_sent_twice_across_a_continue_as_new_on_the_real_engine(
    time_skipping_env: WorkflowEnvironment, smtp: SmtpServer, tmp_path: Path
) -> None:
    """The real worker, activities, store and SMTP: cart updates through the service (and the
    hand-off) push the flow past its limit between its two emails; each email goes out once,
    under the key of its step, and the store keeps one EMAIL_SENT per step."""
    env = time_skipping_env
    store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await store.create_schema()
    policy = default_policy_any_hour().model_copy(
        update={"steps": default_policy_any_hour().steps[:2], "listen_window": timedelta(hours=1)}
    )
    try:
        async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
            checkout_id, reported = await report_now(service, env, sample_checkout(), policy)
            await skip_past_first_step(env, store, checkout_id)
            handle = env.client.get_workflow_handle(workflow_id_for(checkout_id))
            for number in range(HISTORY_LIMIT // 2):
                amount = f"{100 + number}.00"
                await service.update(
                    reported.model_copy(
                        update={"total_price": Price(amount=amount, formatted_amount=amount)}
                    )
                )
                if (await handle.describe()).history_length >= HISTORY_LIMIT - 40:
                    await _settled_handle(handle)
            result = await flow_result(service, env, checkout_id)
        runs = await _runs(env.client, workflow_id_for(checkout_id))
        record = await store.get(checkout_id)
    finally:
        await store.close()

    assert len(runs) >= 2, [len(run.events) for run in runs]
    assert all(len(run.events) <= HISTORY_BOUND for run in runs), [len(r.events) for r in runs]
    assert result.steps_run == 2
    messages = smtp.handler.messages
    assert len(messages) == 2, [m["Subject"] for m in messages]
    assert len({m["Message-ID"] for m in messages}) == 2
    assert record is not None
    sent = [a.step for a in record.activities if a.type is ActivityType.EMAIL_SENT]
    assert sent == [1, 2]
