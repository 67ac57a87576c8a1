"""Recorded histories must replay against the current workflow code (non-determinism guard)."""

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from domain.flow import (
    EMAIL_SUPPRESSED_SIGNAL,
    WORKFLOW_NAME,
    EmailSuppressedSignal,
    RecoveryInput,
    RecoveryResult,
)
from domain.policy import Step
from workers.worker import SANDBOX_RUNNER, WORKFLOWS
from workflows.abandoned_checkout import AbandonedCheckoutWorkflow

HISTORY_DIR = Path(__file__).parent / "histories"
HISTORIES = sorted(HISTORY_DIR.glob("*.json"))

RECORDED = {
    # Made by older workflow code; kept as they are.
    "full_default_policy",
    "recovered_after_first_email",
    "duplicate_update_then_buyer_purchased",  # also the buyer-level stop (buyer_purchased)
    # One per path of the current code (tests/workflows/record_histories.py).
    "cart_update_reset",
    "cart_update_keep",
    "unsubscribed",
    "unsubscribed_signal_before_first_step",
    "cancelled",
    "notification_and_task_steps",
    "email_not_sent_stale_report",
    "email_not_sent_conditions_failed",
    "frequency_cap_deferred",
    "send_window_wait",
    "search_attributes_published",
    # One per later patch (its id in workflows/abandoned_checkout.py).
    "unsubscribed_during_cap_deferral",  # unsubscribe-during-deferral
    "stale_report_recovered_at_start",  # stale-report-stops
    "retry_window_to_next_send_time",  # retry-window-to-next-send
    "undated_update_repeated",  # dedupe-undated-updates
    "task_step_cancelled_while_failing",  # stop-cancels-staff-step
    "continued_as_new_first_run",  # continue-as-new: the run that continues
    "continued_as_new_second_run",  # continue-as-new: the run that takes the carried state
    # New paths with no patch (a new signal, a new step kind: only flows started on them).
    "email_suppressed_before_step",
    "sms_step_refused_no_consent",
    "sms_step_waits_for_window",
}


def test_histories_are_committed():
    assert {p.stem for p in HISTORIES} >= RECORDED


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"abandoned-checkout-{path.stem}", path.read_text())


def _replayer(workflows: list[type]) -> Replayer:
    return Replayer(
        workflows=workflows,
        data_converter=pydantic_data_converter,
        workflow_runner=SANDBOX_RUNNER,
    )


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path):
    result = await _replayer(WORKFLOWS).replay_workflow(
        _history(path), raise_on_replay_failure=False
    )
    assert result.replay_failure is None, result.replay_failure


# The variants below subclass the current workflow under its registered name. They run outside
# the sandbox (which would re-import this test module, pytest and all); the unchanged one shows
# that this alone changes nothing, so the mutated one fails for its reordering only.
@workflow.defn(name=WORKFLOW_NAME, sandboxed=False)
class _Unchanged(AbandonedCheckoutWorkflow):
    @workflow.init
    def __init__(self, flow: RecoveryInput) -> None:
        super().__init__(flow)

    @workflow.run
    async def run(self, flow: RecoveryInput) -> RecoveryResult:
        return await super().run(flow)


@workflow.defn(name=WORKFLOW_NAME, sandboxed=False)
class _TimerBeforeStep(_Unchanged):
    """The current workflow with one reordering: a timer before each step's activity. Only the
    mutation test's Replayer knows it (never in WORKFLOWS, never on a worker)."""

    @workflow.init
    def __init__(self, flow: RecoveryInput) -> None:
        super().__init__(flow)

    @workflow.run
    async def run(self, flow: RecoveryInput) -> RecoveryResult:
        return await super().run(flow)

    async def _run_step(self, index: int, step: Step) -> bool:
        await workflow.sleep(1)
        return await super()._run_step(index, step)


MUTATED = ["full_default_policy", "notification_and_task_steps", "frequency_cap_deferred"]
"""Histories whose first activity is a step's (email, notification): the timer comes before it."""


@pytest.mark.parametrize("name", MUTATED)
async def test_the_replay_check_catches_a_timer_inserted_before_an_activity(name: str):
    history = _history(HISTORY_DIR / f"{name}.json")
    unchanged = await _replayer([_Unchanged]).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert unchanged.replay_failure is None, unchanged.replay_failure

    result = await _replayer([_TimerBeforeStep]).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert isinstance(result.replay_failure, NondeterminismError), result.replay_failure
    # The new timer meets the step's ActivityTaskScheduled in the history.
    message = str(result.replay_failure)
    assert "Timer machine does not handle" in message and "ActivityTaskScheduled" in message
    assert not {_Unchanged, _TimerBeforeStep} & set(WORKFLOWS)


@workflow.defn(name=WORKFLOW_NAME, sandboxed=False)
class _IgnoresSuppression(_Unchanged):
    """The current workflow deaf to the relay's reports: its next email step would send."""

    @workflow.init
    def __init__(self, flow: RecoveryInput) -> None:
        super().__init__(flow)

    @workflow.run
    async def run(self, flow: RecoveryInput) -> RecoveryResult:
        return await super().run(flow)

    @workflow.signal(name=EMAIL_SUPPRESSED_SIGNAL)
    def email_suppressed(self, signal: EmailSuppressedSignal) -> None:
        del signal


def _activities_scheduled(path: Path) -> list[str]:
    history = _history(path)
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]


async def test_the_suppression_history_holds_the_step_it_refused():
    # The signal came after step 1's email; step 2 is only recorded, never sent.
    path = HISTORY_DIR / "email_suppressed_before_step.json"
    assert _activities_scheduled(path) == ["send_recovery_email", "record_activity"]
    signals = [
        event.workflow_execution_signaled_event_attributes.signal_name
        for event in _history(path).events
        if event.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert signals == [EMAIL_SUPPRESSED_SIGNAL]
    unchanged = await _replayer([_Unchanged]).replay_workflow(
        _history(path), raise_on_replay_failure=False
    )
    assert unchanged.replay_failure is None, unchanged.replay_failure
    result = await _replayer([_IgnoresSuppression]).replay_workflow(
        _history(path), raise_on_replay_failure=False
    )
    assert isinstance(result.replay_failure, NondeterminismError), result.replay_failure


def test_the_sms_histories_hold_their_paths():
    refused = _activities_scheduled(HISTORY_DIR / "sms_step_refused_no_consent.json")
    assert refused == ["record_activity"]  # refused by the decision, no SMS activity
    waited = HISTORY_DIR / "sms_step_waits_for_window.json"
    assert _activities_scheduled(waited) == ["send_recovery_sms"]
    timers = [
        event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        for event in _history(waited).events
        if event.HasField("timer_started_event_attributes")
    ]
    # Due 1 h after the report, the window opens 3 h later: one timer to the opening.
    assert timers[0].total_seconds() > 3 * 3600, timers
