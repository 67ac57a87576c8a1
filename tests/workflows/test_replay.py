"""Recorded histories must replay against the current workflow code (non-determinism guard)."""

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from domain.flow import WORKFLOW_NAME, RecoveryInput, RecoveryResult
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
