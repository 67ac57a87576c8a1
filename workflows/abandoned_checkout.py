"""The recovery flow of one abandoned checkout.

Deterministic: no I/O, no wall clock, no settings. Every side effect (email, notification, task,
store write) is an activity, one per step, so that a step costs the Temporal cluster as little as
possible. Signal handlers only change state; the main loop reacts to it.
"""

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.activity import Activity, ActivityType, NotSentReason
    from domain.checkout import AbandonedCheckout, CheckoutStatus
    from domain.flow import RecoveredSignal, RecoveryInput, RecoveryResult, step_key
    from domain.policy import EmailStep, NotificationStep, Step
    from domain.steps import (
        CREATE_TASK,
        PERMANENT_EMAIL_FAILURE,
        RECORD_ACTIVITY,
        RECORD_RECOVERY,
        SEND_EMAIL,
        SEND_NOTIFICATION,
        EmailStepRequest,
        NotificationStepRequest,
        RecordActivityRequest,
        RecordRecoveryRequest,
        StepRequest,
        TaskStepRequest,
    )

# SMTP 4xx and dropped connections heal within minutes; past ~30 minutes of trying, the step gives
# up with EMAIL_NOT_SENT rather than surprising the buyer hours later.
EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=10,
    non_retryable_error_types=[PERMANENT_EMAIL_FAILURE],
)
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=8,
)
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=20,
)
STEP_TIMEOUT = timedelta(seconds=60)
STORE_TIMEOUT = timedelta(seconds=30)


@workflow.defn
class AbandonedCheckoutWorkflow:
    @workflow.init
    def __init__(self, flow: RecoveryInput) -> None:
        # Built here, before any step, so a signal that arrives first finds a complete state.
        scheduled = Activity(type=ActivityType.SCHEDULED, created_date=flow.reported_at)
        self._checkout: AbandonedCheckout = flow.checkout.model_copy(
            update={"activities": [scheduled]}
        )
        self._recovery: RecoveredSignal | None = None
        self._cancelled = False
        self._steps_run = 0

    @workflow.run
    async def run(self, flow: RecoveryInput) -> RecoveryResult:
        for index, step in enumerate(flow.policy.steps):
            if await self._sleep_until(flow.abandoned_at + step.delay):
                break
            await self._run_step(index, step)
            self._steps_run += 1
        else:
            await self._sleep_until(workflow.now() + flow.policy.listen_window)
        return await self._close()

    # --- signals and query -------------------------------------------------------------------

    @workflow.signal
    def recovered(self, signal: RecoveredSignal) -> None:
        if self._recovery is None:
            self._recovery = signal

    @workflow.signal
    def checkout_updated(self, snapshot: AbandonedCheckout) -> None:
        # The record's identity and history stay the flow's; the buyer-facing content is replaced.
        self._checkout = snapshot.model_copy(
            update={
                "id": self._checkout.id,
                "status": self._checkout.status,
                "created_date": self._checkout.created_date,
                "checkout_recovered_date": self._checkout.checkout_recovered_date,
                "order_id": self._checkout.order_id,
                "activities": self._checkout.activities,
            }
        )

    @workflow.signal
    def cancel(self) -> None:
        self._cancelled = True

    @workflow.query
    def checkout(self) -> AbandonedCheckout:
        return self._checkout

    # --- the loop's parts --------------------------------------------------------------------

    @property
    def _stopped(self) -> bool:
        return self._recovery is not None or self._cancelled

    async def _sleep_until(self, due: datetime) -> bool:
        """Sleep on a durable timer until `due`; True as soon as the flow must stop instead."""
        remaining = due - workflow.now()
        if not self._stopped and remaining > timedelta(0):
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(lambda: self._stopped, timeout=remaining)
        return self._stopped

    async def _run_step(self, index: int, step: Step) -> None:
        checkout_id = self._checkout_id
        info = workflow.info()
        common = {
            "checkout_id": checkout_id,
            "workflow_id": info.workflow_id,
            "step_index": index,
            "key": step_key(info.workflow_id, index),
            "at": workflow.now(),
        }
        entry: Activity | None
        if isinstance(step, EmailStep):
            entry = await self._send_email(EmailStepRequest(step=step, **common))
        elif isinstance(step, NotificationStep):
            entry = await self._best_effort(
                SEND_NOTIFICATION, NotificationStepRequest(step=step, **common), WEBHOOK_RETRY
            )
        else:
            entry = await self._best_effort(
                CREATE_TASK, TaskStepRequest(step=step, **common), STORE_RETRY
            )
        if entry is not None:
            self._append(entry)

    async def _send_email(self, request: EmailStepRequest) -> Activity:
        try:
            return await _step_activity(SEND_EMAIL, request, EMAIL_RETRY)
        except ActivityError as err:
            reason = _not_sent_reason(err)
            workflow.logger.warning("Step %s email not sent: %s", request.step_index + 1, reason)
            entry = Activity(
                type=ActivityType.EMAIL_NOT_SENT,
                created_date=request.at,
                step=request.step_index + 1,
                reason=reason,
            )
            await workflow.execute_activity(
                RECORD_ACTIVITY,
                RecordActivityRequest(
                    checkout_id=request.checkout_id, key=request.key, entry=entry
                ),
                start_to_close_timeout=STORE_TIMEOUT,
                retry_policy=STORE_RETRY,
            )
            return entry

    async def _best_effort(
        self, activity_name: str, request: StepRequest, retry: RetryPolicy
    ) -> Activity | None:
        """Run a staff-facing step; when it fails for good the flow goes on without an entry.

        The reference API has no "not sent" entry for notifications and tasks; the failure stays
        visible in the workflow history.
        """
        try:
            return await _step_activity(activity_name, request, retry)
        except ActivityError as err:
            workflow.logger.warning(
                "Step %s (%s) failed for good: %s", request.step_index + 1, activity_name, err.cause
            )
            return None

    async def _close(self) -> RecoveryResult:
        if self._recovery is not None:
            recovered_at = self._recovery.recovered_at or workflow.now()
            self._checkout = self._checkout.model_copy(
                update={
                    "status": CheckoutStatus.RECOVERED,
                    "checkout_recovered_date": recovered_at,
                    "order_id": self._recovery.order_id,
                }
            )
            # The recovering service usually wrote this already; the write is idempotent and
            # covers a signal sent straight to Temporal.
            await workflow.execute_activity(
                RECORD_RECOVERY,
                RecordRecoveryRequest(
                    checkout_id=self._checkout_id,
                    recovered_at=recovered_at,
                    order_id=self._recovery.order_id,
                ),
                start_to_close_timeout=STORE_TIMEOUT,
                retry_policy=STORE_RETRY,
            )
            closed_because = "recovered"
        elif self._cancelled:
            closed_because = "cancelled"
        else:
            closed_because = "window_elapsed"
        return RecoveryResult(
            status=self._checkout.status,
            closed_because=closed_because,
            steps_run=self._steps_run,
            recovered_at=self._checkout.checkout_recovered_date,
        )

    def _append(self, entry: Activity) -> None:
        self._checkout = self._checkout.model_copy(
            update={"activities": [*self._checkout.activities, entry]}
        )

    @property
    def _checkout_id(self) -> str:
        assert self._checkout.id is not None
        return self._checkout.id


async def _step_activity(name: str, request: StepRequest, retry: RetryPolicy) -> Activity:
    """One step's single activity: it does the side effect and records the entry it returns."""
    entry: Activity = await workflow.execute_activity(
        name,
        request,
        result_type=Activity,
        start_to_close_timeout=STEP_TIMEOUT,
        retry_policy=retry,
    )
    return entry


def _not_sent_reason(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == PERMANENT_EMAIL_FAILURE:
        details = cause.details
        if details and isinstance(details[0], str):
            return details[0]
        return NotSentReason.SMTP_REJECTED
    # Retries ran out (SMTP down or refusing with 4xx for the whole retry budget).
    return NotSentReason.SMTP_UNAVAILABLE
