"""The recovery flow of one abandoned checkout.

Deterministic: no I/O, no wall clock, no settings. Every side effect (email, notification, task,
store write) is an activity, one per step, so that a step costs the Temporal cluster as little as
possible. Signal handlers only change state; the main loop reacts to it.
"""

import asyncio
import contextlib
import functools
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from domain.activity import ActivityEntry, ActivityType, NotSentReason
    from domain.checkout import AbandonedCheckout, CheckoutStatus
    from domain.flow import (
        BUYER_PURCHASED_SIGNAL,
        CANCEL_SIGNAL,
        CHECKOUT_UPDATED_SIGNAL,
        CLOSED_STATUS,
        EMAIL_SUPPRESSED_SIGNAL,
        RECOVERED_SIGNAL,
        STATUS_ATTRIBUTE,
        STEP_ATTRIBUTE,
        UNSUBSCRIBED_SIGNAL,
        WORKFLOW_NAME,
        ClosedBecause,
        EmailSuppressedSignal,
        RecoveredSignal,
        RecoveryInput,
        RecoveryResult,
        step_key,
    )
    from domain.flow_state import CarriedState
    from domain.policy import EmailStep, NotificationStep, RecoveryPolicy, SmsStep, Step
    from domain.schedule import (
        FlowProgress,
        StepDecision,
        buyer_zone,
        decide_step,
        is_stale,
        send_time,
    )
    from domain.steps import (
        CREATE_TASK,
        PERMANENT_EMAIL_FAILURE,
        PERMANENT_SMS_FAILURE,
        RECORD_ACTIVITY,
        RECORD_RECOVERY,
        SEND_EMAIL,
        SEND_HEARTBEAT_TIMEOUT,
        SEND_NOTIFICATION,
        SEND_SMS,
        EmailStepRequest,
        EmailStepResult,
        NotificationStepRequest,
        RecordActivityRequest,
        RecordRecoveryRequest,
        SmsStepRequest,
        StepRequest,
        TaskStepRequest,
    )


# SMTP 4xx and dropped connections: tried again and again for the policy's send_retry_window
# (the activity's schedule-to-close timeout, see _email_deadline), then EMAIL_NOT_SENT.
EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=0,
    non_retryable_error_types=[PERMANENT_EMAIL_FAILURE],
)
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=8,
)
# A provider answering 5xx or unreachable: some 20 minutes of attempts, then NOTIFICATION_NOT_SENT
# (sms_unavailable). A text hours late would arrive out of place, so it does not retry for long.
SMS_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=8,
    non_retryable_error_types=[PERMANENT_SMS_FAILURE],
)
# Unbounded: a database outage delays a flow, never fails it. Once the store is back, the next
# attempt comes within a minute.
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=0,
)
STEP_TIMEOUT = timedelta(seconds=60)
STORE_TIMEOUT = timedelta(seconds=30)

# workflow.patched ids, one per change to what running flows do (README, "Tests"): flows started
# before a change replay as they ran.
UNSUBSCRIBE_DURING_DEFERRAL = "unsubscribe-during-deferral"
"""An unsubscribe while an email waits out the frequency cap records `unsubscribed` at once."""
STALE_REPORT_STOPS = "stale-report-stops"
"""A stale report stopped (recovered, cancelled, bought elsewhere) records no further step."""
RETRY_WINDOW_TO_NEXT_SEND = "retry-window-to-next-send"
"""An email's retry window ends when the next step actually runs (its send time), not at its
raw due time."""
DEDUPE_UNDATED_UPDATES = "dedupe-undated-updates"
"""An undated cart update with the content the flow holds is a redelivery, not a change."""
STOP_CANCELS_STAFF_STEP = "stop-cancels-staff-step"
"""A stop signal cancels a staff step's activity still retrying, instead of waiting for it."""
SEND_HEARTBEAT = "send-heartbeat"
"""The email step's activity has a heartbeat timeout (SEND_HEARTBEAT_TIMEOUT): an attempt on a
worker that died is retried elsewhere within seconds, not when its minute is up."""
CONTINUE_AS_NEW = "continue-as-new"
"""A flow whose history passes HISTORY_LIMIT (or that the server suggests it) continues as new
with its state (domain/flow_state.py) while it waits between steps or listens. Asked once, at
the start of a run: a flow started before the change never continues, and replays as it ran."""

HISTORY_LIMIT = 1_000
"""Events in one run's history past which the flow continues as new. A flow without cart
updates stays far below (some 20 events a step); each update adds 4 to 6. Temporal warns at
10,240 events and fails a run at 51,200; the history is what a worker replays, so it stays
small."""

_NOT_CONTENT = frozenset(
    {
        "id",
        "created_date",
        "updated_date",
        "status",
        "checkout_recovered_date",
        "order_id",
        "recovery_attribution",
        "stop_reason",
        "flow_state",
        "activities",
    }
)
"""What a cart update does not compare: the record's identity and history (the flow keeps its
own) and what the engine owns. The rest is the cart the buyer sees."""


class _Interrupted:
    """A staff step's activity cancelled because the flow stopped: the step did not run."""


_INTERRUPTED = _Interrupted()


@workflow.defn(name=WORKFLOW_NAME)
class AbandonedCheckoutWorkflow:
    @workflow.init
    def __init__(self, flow: RecoveryInput) -> None:
        # Built here, before any step, so a signal that arrives first finds a complete state.
        scheduled = ActivityEntry(type=ActivityType.SCHEDULED, created_date=flow.reported_at)
        self._checkout: AbandonedCheckout = flow.checkout.model_copy(
            update={"activities": [scheduled]}
        )
        self._policy: RecoveryPolicy = flow.policy
        # Whether a step is overdue or the report stale counts from these, which a cart update
        # does not move (unlike the anchor below).
        self._abandoned_at: datetime = flow.abandoned_at
        self._reported_at: datetime = flow.reported_at
        self._recovery: RecoveredSignal | None = None
        self._cancelled = False
        self._buyer_purchased = False
        self._progress = FlowProgress()
        """What the steps so far (and the unsubscribed signal) leave for the next decision."""
        self._steps_run = 0
        # Steps are due at `anchor + delay`. A cart update under on_cart_update = "reset" moves
        # the anchor; the counter tells a sleeping step to work out its due time again.
        self._anchor: datetime = flow.abandoned_at
        self._schedule_changes = 0
        self._publishes = flow.publish_search_attributes
        self._last_update: datetime | None = None
        """The updatedDate of the newest cart update applied."""
        self._flow = flow
        self._next_step = 0
        """The index of the policy step to run next."""
        self._listen_until: datetime | None = None
        self._continues = False
        """Whether this run may continue as new (patch CONTINUE_AS_NEW, asked in run)."""
        self._runs = 1
        if flow.carried is not None:
            self._take_over(flow.carried)

    def _take_over(self, carried: CarriedState) -> None:
        """A run continued as new: the state the run before left, instead of a fresh start."""
        self._checkout = carried.checkout
        self._progress = carried.progress
        self._steps_run = carried.steps_run
        self._next_step = carried.next_step
        self._anchor = carried.anchor
        self._last_update = carried.last_update
        self._listen_until = carried.listen_until
        if carried.recovered:
            self._recovery = RecoveredSignal(
                order_id=carried.order_id, recovered_at=carried.recovered_at
            )
        self._cancelled = carried.cancelled
        self._buyer_purchased = carried.buyer_purchased
        self._runs = carried.runs + 1

    @workflow.run
    async def run(self, flow: RecoveryInput) -> RecoveryResult:
        policy = flow.policy
        # A stale report is recorded (the service stored it) but nobody is messaged: no step
        # waits, decide_step rules each one out at once, and the flow still listens for a
        # recovery.
        stale = is_stale(policy, flow.abandoned_at, flow.reported_at)
        self._continues = workflow.patched(CONTINUE_AS_NEW)
        # A continued run starts at the step the run before had not run yet.
        for index in range(self._next_step, len(policy.steps)):
            step = policy.steps[index]
            if stale:
                # No wait for a stale report to be stopped in; the steps check for a stop
                # themselves (patched: before it, they recorded stale_report all the same).
                if self._stopped and workflow.patched(STALE_REPORT_STOPS):
                    break
            elif not await self._sleep_until(
                functools.partial(self._step_due, step),
                wake_on_schedule_change=True,
                may_continue=True,
            ):
                break
            self._publish(STEP_ATTRIBUTE.value_set(index + 1))
            if not await self._run_step(index, step):
                break
            self._steps_run += 1
            self._next_step = index + 1
        else:
            await self._listen_for_recovery()
        result = await self._close()
        self._publish(STATUS_ATTRIBUTE.value_set(CLOSED_STATUS[result.closed_because]))
        return result

    def _publish(self, update: SearchAttributeUpdate[Any]) -> None:
        # The patch keeps histories recorded before flows published anything replayable.
        if self._publishes and workflow.patched("search-attributes"):
            workflow.upsert_search_attributes([update])

    # --- signals and query -------------------------------------------------------------------

    @workflow.signal(name=RECOVERED_SIGNAL)
    def recovered(self, signal: RecoveredSignal) -> None:
        if self._recovery is None:
            self._recovery = signal

    @workflow.signal(name=UNSUBSCRIBED_SIGNAL)
    def unsubscribed(self) -> None:
        """The buyer's address unsubscribed (from any of their checkouts' emails)."""
        self._progress = replace(self._progress, unsubscribed=True)

    @workflow.signal(name=EMAIL_SUPPRESSED_SIGNAL)
    def email_suppressed(self, signal: EmailSuppressedSignal) -> None:
        """The relay reported the buyer's address (a hard bounce, a complaint): the next email
        steps are refused with that reason. The first report stays, as the store keeps the
        suppression's first reason."""
        if self._progress.suppressed is None:
            self._progress = replace(self._progress, suppressed=signal.reason)

    @workflow.signal(name=BUYER_PURCHASED_SIGNAL)
    def buyer_purchased(self) -> None:
        """The buyer bought through another checkout: stop before the next step."""
        self._buyer_purchased = True

    @workflow.signal(name=CHECKOUT_UPDATED_SIGNAL)
    def checkout_updated(self, snapshot: AbandonedCheckout) -> None:
        if self._already_applied(snapshot):
            return
        if snapshot.updated_date is not None:
            self._last_update = snapshot.updated_date
        if self._policy.on_cart_update == "reset":
            self._anchor = workflow.now()
            self._schedule_changes += 1
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

    def _already_applied(self, snapshot: AbandonedCheckout) -> bool:
        """A snapshot the flow has (or one older than it has): the hand-off delivers at least
        once, so the same update may arrive twice, and a late copy after a newer one."""
        if not workflow.patched("dedupe-updates"):
            return False
        given, applied = snapshot.updated_date, self._last_update
        if given is None:
            # No date to order it by (the service always dates its updates; a signal sent
            # straight to Temporal may not): the same cart again is a redelivery, and one that
            # changes nothing must not move the schedule.
            return self._same_cart(snapshot) and workflow.patched(DEDUPE_UNDATED_UPDATES)
        return applied is not None and given <= applied

    def _same_cart(self, snapshot: AbandonedCheckout) -> bool:
        """Whether `snapshot` shows the buyer the cart the flow already holds."""
        return snapshot.model_dump(exclude=set(_NOT_CONTENT)) == self._checkout.model_dump(
            exclude=set(_NOT_CONTENT)
        )

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self) -> None:
        self._cancelled = True

    @workflow.query
    def checkout(self) -> AbandonedCheckout:
        return self._checkout

    # --- the loop's parts --------------------------------------------------------------------

    @property
    def _stopped(self) -> bool:
        return self._recovery is not None or self._cancelled or self._buyer_purchased

    async def _sleep_until(
        self,
        due: Callable[[], datetime],
        *,
        wake_on_schedule_change: bool = False,
        or_until: Callable[[], bool] | None = None,
        may_continue: bool = False,
    ) -> bool:
        """Sleep on a durable timer until `due()`; False as soon as the flow must stop instead.

        With `wake_on_schedule_change`, a schedule change (a cart update under on_cart_update =
        "reset") wakes the sleep, and it goes on until the due time `due()` now gives. With
        `or_until`, the sleep also ends (True) as soon as `or_until()` holds. With
        `may_continue` (a wait the carried state describes whole: between steps, or listening),
        a history grown past its limit continues the flow as new from within the sleep, and
        the new run sleeps on until the same due time.
        """

        def ended() -> bool:
            return or_until is not None and or_until()

        def must_continue() -> bool:
            return may_continue and self._history_full()

        while True:
            changes = self._schedule_changes

            def woken(seen: int = changes) -> bool:
                rescheduled = wake_on_schedule_change and self._schedule_changes != seen
                return self._stopped or rescheduled or ended() or must_continue()

            remaining = due() - workflow.now()
            if (
                not self._stopped
                and not ended()
                and not must_continue()
                and remaining > timedelta(0)
            ):
                with contextlib.suppress(asyncio.TimeoutError):
                    await workflow.wait_condition(woken, timeout=remaining)
            if self._stopped:
                return False
            if must_continue():
                await self._continue_as_new()
                continue  # a stop came while the handlers finished
            if ended():
                return True
            if not wake_on_schedule_change or self._schedule_changes == changes:
                return True

    async def _listen_for_recovery(self) -> None:
        """After the last step: the policy's listen_window, or until the flow must stop."""
        if self._listen_until is None:
            self._listen_until = workflow.now() + self._policy.listen_window
        listen_until = self._listen_until
        await self._sleep_until(lambda: listen_until, may_continue=True)

    # --- continue-as-new ---------------------------------------------------------------------

    def _history_full(self) -> bool:
        """Whether this run's history is long enough to continue as new (patched runs only)."""
        if not self._continues:
            return False
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= HISTORY_LIMIT
        )

    async def _continue_as_new(self) -> None:
        """Close this run and start the next with the flow's state; returns only when a stop
        came meanwhile (the flow then stops in this run).

        Signals are not lost at the boundary: their handlers only change state, which is taken
        after every handler has finished; one that reaches the server after this run's last
        workflow task started makes the server refuse the continue-as-new and hand the signal
        to a new task of this run, which decides again.
        """
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._stopped:
            return
        carried = self._carried()
        workflow.logger.info(
            "Continuing as new after %s events (run %s, next step %s)",
            workflow.info().get_current_history_length(),
            self._runs,
            carried.next_step + 1,
        )
        self._continue(self._flow.model_copy(update={"carried": carried}))

    def _carried(self) -> CarriedState:
        recovery = self._recovery
        return CarriedState(
            checkout=self._checkout,
            next_step=self._next_step,
            steps_run=self._steps_run,
            progress=self._progress,
            anchor=self._anchor,
            last_update=self._last_update,
            listen_until=self._listen_until,
            recovered=recovery is not None,
            order_id=recovery.order_id if recovery else None,
            recovered_at=recovery.recovered_at if recovery else None,
            cancelled=self._cancelled,
            buyer_purchased=self._buyer_purchased,
            runs=self._runs,
        )

    def _continue(self, flow: RecoveryInput) -> NoReturn:
        # The new run keeps the search attributes this one published (status, step reached).
        attributes: TypedSearchAttributes | None = None
        if self._publishes:
            attributes = workflow.info().typed_search_attributes
        workflow.continue_as_new(flow, search_attributes=attributes)

    def _step_due(self, step: Step) -> datetime:
        """When the step may run, counted from the (possibly moved) anchor."""
        return self._send_time(self._anchor + step.delay, step)

    def _send_time(self, due: datetime, step: Step) -> datetime:
        """When a step due at `due` may run: not before now, emails in the send window."""
        return send_time(self._policy, step, self._checkout, due, workflow.now())

    def _decide(self, index: int) -> StepDecision:
        """The policy's decision for the step now due, on the newest snapshot."""
        decision = decide_step(
            self._policy,
            index,
            self._checkout,
            abandoned_at=self._abandoned_at,
            reported_at=self._reported_at,
            progress=self._progress,
        )
        # Taken over at once, with no await in between, so an unsubscribed signal handled while
        # the step then runs stays in the progress.
        self._progress = decision.progress
        return decision

    async def _skip(self, index: int, step: Step, decision: StepDecision) -> None:
        """A step the policy rules out: emails record EMAIL_NOT_SENT with the reason (and the
        consent decision, when the step reached it); staff steps have no such entry in the
        reference, so they only log it."""
        reason = decision.not_sent_reason
        assert reason is not None
        if isinstance(step, EmailStep):
            await self._refuse_email(index, reason, decision.consent)
        elif isinstance(step, SmsStep):
            # A text reaches the buyer as an email does: its refusals are recorded too.
            workflow.logger.info("Step %s skipped: %s", index + 1, reason)
            self._append(await self._record_sms_not_sent(index, reason, workflow.now()))
        else:
            workflow.logger.info("Step %s skipped: %s", index + 1, reason)

    async def _refuse_email(self, index: int, reason: str, consent: str | None) -> None:
        """An email step that does not send: EMAIL_NOT_SENT now, with the reason and consent."""
        workflow.logger.info("Step %s skipped: %s", index + 1, reason)
        self._append(await self._record_not_sent(index, reason, workflow.now(), consent))

    async def _record_not_sent(
        self, index: int, reason: str, at: datetime, consent: str | None = None
    ) -> ActivityEntry:
        entry = ActivityEntry(
            type=ActivityType.EMAIL_NOT_SENT,
            created_date=at,
            step=index + 1,
            reason=reason,
            consent=consent,
        )
        return await self._record_entry(index, entry)

    async def _record_entry(self, index: int, entry: ActivityEntry) -> ActivityEntry:
        """Record the entry of step `index` that its own activity did not (it never ran, or
        gave up)."""
        await workflow.execute_activity(
            RECORD_ACTIVITY,
            RecordActivityRequest(
                checkout_id=self._checkout_id,
                key=step_key(workflow.info().workflow_id, index),
                entry=entry,
            ),
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
        )
        return entry

    async def _run_step(self, index: int, step: Step) -> bool:
        """Decide the step now due and run it, or record why not; False when the flow stopped
        while the step waited (deferred send)."""
        decision = self._decide(index)
        if not decision.runs:
            await self._skip(index, step, decision)
            return True
        checkout_id = self._checkout_id
        info = workflow.info()
        common = {
            "checkout_id": checkout_id,
            "workflow_id": info.workflow_id,
            "step_index": index,
            "key": step_key(info.workflow_id, index),
            "at": workflow.now(),
        }
        entry: ActivityEntry | _Interrupted | None
        if isinstance(step, EmailStep):
            return await self._email_step(index, step, decision, common)
        if isinstance(step, SmsStep):
            self._append(await self._sms_step(step, common))
            return True
        if isinstance(step, NotificationStep):
            entry = await self._best_effort(
                SEND_NOTIFICATION, NotificationStepRequest(step=step, **common), WEBHOOK_RETRY
            )
        else:
            entry = await self._best_effort(
                CREATE_TASK, TaskStepRequest(step=step, **common), STORE_RETRY
            )
        if isinstance(entry, _Interrupted):
            return False
        if entry is not None:
            self._append(entry)
        return True

    async def _email_step(
        self, index: int, step: EmailStep, decision: StepDecision, common: dict[str, object]
    ) -> bool:
        while True:
            request = EmailStepRequest.model_validate(
                {
                    **common,
                    "at": workflow.now(),
                    "step": step,
                    "frequency_cap": self._policy.frequency_cap,
                    "consent": decision.consent,
                    "time_zone": buyer_zone(self._checkout, self._policy).key,
                }
            )
            result = await self._send_email(request)
            if result.deferred_until is None:
                self._append(
                    ActivityEntry.model_validate(result.model_dump(exclude={"deferred_until"}))
                )
                return True
            # Another checkout of this buyer had an email within the cap window: try again when
            # the window ends (and the send window is open), unless the flow stops meanwhile.
            workflow.logger.info("Step %s deferred by the frequency cap", index + 1)
            deferred_due = functools.partial(self._send_time, result.deferred_until, step)
            if not workflow.patched(UNSUBSCRIBE_DURING_DEFERRAL):
                if not await self._sleep_until(deferred_due):
                    return False
                continue
            # An unsubscribe (or a bounce, a complaint) meanwhile ends the wait: the step is
            # refused as it would have been at its decision, with the consent it had, and the
            # flow goes on.
            if not await self._sleep_until(deferred_due, or_until=self._address_refused):
                return False
            refusal = self._progress.address_refusal
            if refusal is not None:
                await self._refuse_email(index, refusal, decision.consent)
                return True

    def _address_refused(self) -> bool:
        return self._progress.address_refusal is not None

    async def _send_email(self, request: EmailStepRequest) -> EmailStepResult:
        try:
            # The step's single activity: it sends and records the entry it returns.
            result: EmailStepResult = await workflow.execute_activity(
                SEND_EMAIL,
                request,
                result_type=EmailStepResult,
                start_to_close_timeout=STEP_TIMEOUT,
                schedule_to_close_timeout=self._email_deadline(request.step_index),
                heartbeat_timeout=(
                    SEND_HEARTBEAT_TIMEOUT if workflow.patched(SEND_HEARTBEAT) else None
                ),
                retry_policy=EMAIL_RETRY,
            )
            return result
        except ActivityError as err:
            reason = _not_sent_reason(err)
            workflow.logger.warning("Step %s email not sent: %s", request.step_index + 1, reason)
            entry = await self._record_not_sent(
                request.step_index, reason, request.at, request.consent
            )
            return EmailStepResult.model_validate(entry.model_dump())

    async def _sms_step(self, step: SmsStep, common: dict[str, object]) -> ActivityEntry:
        """The step's single activity texts and records the entry it returns; when it gives up
        (sms_rejected, template_error, the provider down throughout), the flow records why."""
        request = SmsStepRequest.model_validate(
            {
                **common,
                "step": step,
                "frequency_cap": self._policy.frequency_cap,
                "time_zone": buyer_zone(self._checkout, self._policy).key,
            }
        )
        try:
            entry: ActivityEntry = await workflow.execute_activity(
                SEND_SMS,
                request,
                result_type=ActivityEntry,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=SMS_RETRY,
            )
            return entry
        except ActivityError as err:
            rejected, gave_up = NotSentReason.SMS_REJECTED, NotSentReason.SMS_UNAVAILABLE
            reason = _failure_reason(err, PERMANENT_SMS_FAILURE, rejected, gave_up)
            workflow.logger.warning("Step %s SMS not sent: %s", request.step_index + 1, reason)
            return await self._record_sms_not_sent(request.step_index, reason, request.at)

    async def _record_sms_not_sent(self, index: int, reason: str, at: datetime) -> ActivityEntry:
        entry = ActivityEntry(
            type=ActivityType.NOTIFICATION_NOT_SENT,
            created_date=at,
            step=index + 1,
            reason=reason,
            channel="sms",
        )
        return await self._record_entry(index, entry)

    async def _best_effort(
        self, activity_name: str, request: StepRequest, retry: RetryPolicy
    ) -> ActivityEntry | _Interrupted | None:
        """Run a staff-facing step; when it fails for good the flow goes on without an entry.

        The reference API has no "not sent" entry for notifications and tasks; the failure stays
        visible in the workflow history. A stop signal while the activity still retries (a task
        retries without limit, through a database outage) cancels it: _INTERRUPTED. The
        cancellation waits for an attempt under way, which re-checks the store for the stop
        anyway, so the flow knows what it did.
        """
        handle = workflow.start_activity(
            activity_name,
            request,
            result_type=ActivityEntry,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=retry,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        await workflow.wait_condition(lambda: handle.done() or self._stopped)
        interrupted = not handle.done() and workflow.patched(STOP_CANCELS_STAFF_STEP)
        if interrupted:
            handle.cancel()
        try:
            entry: ActivityEntry = await handle
        except ActivityError as err:
            if interrupted:
                workflow.logger.info(
                    "Step %s (%s) cancelled: the flow stopped",
                    request.step_index + 1,
                    activity_name,
                )
                return _INTERRUPTED
            workflow.logger.warning(
                "Step %s (%s) failed for good: %s", request.step_index + 1, activity_name, err.cause
            )
            return None
        return entry

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
            closed_because = ClosedBecause.RECOVERED
        elif self._cancelled:
            closed_because = ClosedBecause.CANCELLED
        elif self._buyer_purchased:
            closed_because = ClosedBecause.BUYER_PURCHASED
        else:
            closed_because = ClosedBecause.WINDOW_ELAPSED
        return RecoveryResult(
            status=self._checkout.status,
            closed_because=closed_because,
            steps_run=self._steps_run,
            recovered_at=self._checkout.checkout_recovered_date,
        )

    def _email_deadline(self, index: int) -> timedelta:
        """How long an email step may keep trying through a relay outage: the policy's
        send_retry_window, cut when the next step runs (a later reminder must not overtake it:
        its due time, moved into the send window for an email), and never shorter than one
        full attempt."""
        window = self._policy.send_retry_window
        if index + 1 >= len(self._policy.steps):
            return max(window, STEP_TIMEOUT)
        now = workflow.now()
        after = self._policy.steps[index + 1]
        next_due = self._anchor + after.delay
        by_due = max(min(window, next_due - now), STEP_TIMEOUT)
        by_send_time = max(min(window, self._send_time(next_due, after) - now), STEP_TIMEOUT)
        # Asked only when the two differ, so flows the change does not touch carry no marker.
        if by_send_time != by_due and workflow.patched(RETRY_WINDOW_TO_NEXT_SEND):
            return by_send_time
        return by_due

    def _append(self, entry: ActivityEntry) -> None:
        self._checkout = self._checkout.model_copy(
            update={"activities": [*self._checkout.activities, entry]}
        )

    @property
    def _checkout_id(self) -> str:
        assert self._checkout.id is not None
        return self._checkout.id


def _not_sent_reason(err: ActivityError) -> str:
    # Else the send retry window ran out (SMTP down or refusing with 4xx all along).
    return _failure_reason(
        err, PERMANENT_EMAIL_FAILURE, NotSentReason.SMTP_REJECTED, NotSentReason.SMTP_UNAVAILABLE
    )


def _failure_reason(err: ActivityError, permanent_type: str, rejected: str, gave_up: str) -> str:
    """The reason a failed send step records: a permanent failure's own (in its details, else
    `rejected`), or `gave_up` when the retries ran out."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == permanent_type:
        details = cause.details
        if details and isinstance(details[0], str):
            return details[0]
        return rejected
    return gave_up
