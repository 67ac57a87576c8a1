"""Record the workflow histories the replay test checks against current workflow code.

Run after a deliberate, patched change to the workflow, never to "fix" a failing replay test:
    .venv/bin/python -m tests.workflows.record_histories [--all]

Without --all it records only the histories of the current workflow code (one per path the
replay test guards: cart updates, unsubscribe, cancel, staff steps, EMAIL_NOT_SENT, frequency cap,
send window, search attributes, and the paths of later patches) that have no file yet: a history
once committed is the record of the code that made it, and the replay test checks that later
code still runs what it holds. The three oldest ones (full_default_policy,
recovered_after_first_email, duplicate_update_then_buyer_purchased) were made by older workflow
code; only --all records them, or any other, again.

Most recordings run the real engine (store, SMTP, the hand-off). Paths the real parts cannot be
made to take on demand (a task activity failing over and over) run the real workflow against
the stand-in activities of tests/workflows/stand_ins.py instead; the history is the workflow's
own either way.
"""

import asyncio
import contextlib
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.activity import ActivityType, NotSentReason
from domain.checkout import AbandonedCheckout
from domain.flow import (
    CANCEL_SIGNAL,
    CHECKOUT_UPDATED_SIGNAL,
    EMAIL_SUPPRESSED_SIGNAL,
    RECOVERED_SIGNAL,
    UNSUBSCRIBED_SIGNAL,
    EmailSuppressedSignal,
    RecoveredSignal,
    RecoveryInput,
    workflow_id_for,
)
from domain.policy import RecoveryPolicy, parse_policy
from domain.steps import CREATE_TASK, SEND_EMAIL
from service.checkouts import CheckoutService
from store.sql import SqlStore
from tests.support import (
    engine_settings,
    eventually,
    running_engine,
    sample_checkout,
    smtp_server,
    start_dev_server,
    start_time_skipping,
)
from tests.workflows.stand_ins import StandIns, raising
from workers.policy_files import load_policy
from workers.search_attributes import registered_or_unreachable
from workers.worker import SANDBOX_RUNNER
from workflows.abandoned_checkout import HISTORY_LIMIT, AbandonedCheckoutWorkflow

HISTORIES = Path(__file__).parent / "histories"
NO_CAP = {"window": "0s"}
RECORD_ALL = "--all" in sys.argv


def _wanted(name: str) -> bool:
    """Whether to record `name`: only when it has no file yet, unless --all."""
    return RECORD_ALL or not (HISTORIES / f"{name}.json").exists()


async def _record(
    env: WorkflowEnvironment, service: CheckoutService, name: str, recover_after: timedelta | None
) -> None:
    now = await env.get_current_time()
    checkout = sample_checkout(checkoutId=f"replay-{name}").model_copy(update={"created_date": now})
    outcome = await service.report(checkout, load_policy("default"), now=now)
    handle = env.client.get_workflow_handle(workflow_id_for(outcome.checkout_id))
    if recover_after is not None:
        await env.sleep(recover_after)
        await asyncio.sleep(2)  # let the step's activity finish in real time
        await service.recover(outcome.checkout_id, order_id="order-1")
    await _save_when_done(env, handle, name)


async def _save_when_done(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], name: str
) -> None:
    await env.client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
    await handle.result()
    await env.client.test_service.lock_time_skipping(LockTimeSkippingRequest())
    await _save(handle, name)


async def _save(handle: WorkflowHandle[Any, Any], name: str) -> None:
    history = await handle.fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())
    print(f"wrote {HISTORIES / f'{name}.json'} ({len(history.events)} events)")


async def _record_duplicate_update_then_purchase(
    env: WorkflowEnvironment, service: CheckoutService
) -> None:
    """A cart update delivered twice (the hand-off delivers at least once; patch
    "dedupe-updates"), then the buyer buys through another checkout (buyer_purchased)."""
    name = "duplicate_update_then_buyer_purchased"
    policy = load_policy("default").model_copy(update={"on_cart_update": "reset"})
    now = await env.get_current_time()
    buyer = {"email": "replay-buyer@example.com", "visitorId": "replay-visitor"}
    checkout = sample_checkout(checkoutId=f"replay-{name}", buyerInfo=buyer).model_copy(
        update={"created_date": now}
    )
    sibling = sample_checkout(checkoutId=f"replay-{name}-sibling", buyerInfo=buyer)
    outcome = await service.report(checkout, policy, now=now)
    other = await service.report(sibling.model_copy(update={"created_date": now}), policy, now=now)
    handle = env.client.get_workflow_handle(workflow_id_for(outcome.checkout_id))
    await env.sleep(timedelta(minutes=30))
    snapshot = checkout.model_copy(
        update={"id": outcome.checkout_id, "updated_date": await env.get_current_time()}
    )
    await handle.signal(CHECKOUT_UPDATED_SIGNAL, snapshot)
    await handle.signal(CHECKOUT_UPDATED_SIGNAL, snapshot)
    await env.sleep(timedelta(hours=2))
    await asyncio.sleep(2)  # let the step's activity finish in real time
    await service.recover(other.checkout_id, order_id="order-2")
    await _save_when_done(env, handle, name)


# --- the paths of the current workflow code -----------------------------------------------------


def _policy(*steps: dict[str, Any], **keys: Any) -> RecoveryPolicy:
    values = {"name": "replay", "listen_window": "1h", "frequency_cap": NO_CAP}
    return parse_policy({**values, **keys, "steps": list(steps)}, "replay")


def _email(delay: str, template: str = "reminder", **keys: Any) -> dict[str, Any]:
    return {"delay": delay, "action": "email", "template": template, **keys}


TWO_EMAILS = (_email("1h"), _email("5h", "last_chance"))


def _buyer(name: str) -> dict[str, str]:
    """Each recording its own buyer: a purchase, an unsubscribe or the cap reach all of a buyer's
    flows."""
    return {"email": f"replay-{name}@example.com", "visitorId": f"replay-{name}"}


async def _report(
    env: WorkflowEnvironment,
    service: CheckoutService,
    name: str,
    policy: RecoveryPolicy,
    *,
    abandoned_before: timedelta = timedelta(0),
    buyer: str | None = None,
    **fields: Any,
) -> tuple[str, AbandonedCheckout]:
    now = await env.get_current_time()
    checkout = sample_checkout(
        checkoutId=f"replay-{name}", buyerInfo=_buyer(buyer or name), **fields
    ).model_copy(update={"created_date": now - abandoned_before})
    outcome = await service.report(checkout, policy, now=now)
    assert outcome.new, name
    return outcome.checkout_id, checkout.model_copy(update={"id": outcome.checkout_id})


def _handle(env: WorkflowEnvironment, checkout_id: str) -> WorkflowHandle[Any, Any]:
    return env.client.get_workflow_handle(workflow_id_for(checkout_id))


def _has(store: SqlStore, checkout_id: str, kind: ActivityType) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        found = await store.get(checkout_id)
        return found is not None and any(a.type is kind for a in found.activities)

    return probe


async def _after_first_email(env: WorkflowEnvironment, store: SqlStore, checkout_id: str) -> None:
    """Skip past step 1 (due at 1 h) and wait, in real time, for its email to be recorded."""
    await env.sleep(timedelta(hours=2))
    await eventually(_has(store, checkout_id, ActivityType.EMAIL_SENT), what="step 1 email")


async def _record_cart_update(
    env: WorkflowEnvironment, service: CheckoutService, store: SqlStore, mode: str
) -> None:
    """A smaller cart after the first email: "reset" moves step 2 to 5 h after the update,
    "keep" holds it at 5 h after the abandonment; both show the newest snapshot."""
    name = f"cart_update_{mode}"
    checkout_id, reported = await _report(
        env, service, name, _policy(*TWO_EMAILS, on_cart_update=mode)
    )
    await _after_first_email(env, store, checkout_id)
    await service.update(reported.model_copy(update={"line_items": reported.line_items[:1]}))
    await _save_when_done(env, _handle(env, checkout_id), name)


async def _record_unsubscribed(
    env: WorkflowEnvironment, service: CheckoutService, store: SqlStore
) -> None:
    """The buyer unsubscribes after the first email (the `unsubscribed` signal, through the
    service): step 2 records EMAIL_NOT_SENT (unsubscribed)."""
    name = "unsubscribed"
    checkout_id, _ = await _report(env, service, name, _policy(*TWO_EMAILS))
    await _after_first_email(env, store, checkout_id)
    told = await service.unsubscribe(checkout_id)
    assert checkout_id in told, told
    await _save_when_done(env, _handle(env, checkout_id), name)


async def _record_unsubscribed_signal(env: WorkflowEnvironment, service: CheckoutService) -> None:
    """The `unsubscribed` signal sent straight to Temporal before the first step."""
    name = "unsubscribed_signal_before_first_step"
    checkout_id, _ = await _report(env, service, name, _policy(_email("1h")))
    handle = _handle(env, checkout_id)
    await handle.signal(UNSUBSCRIBED_SIGNAL)
    await _save_when_done(env, handle, name)


async def _record_cancelled(
    env: WorkflowEnvironment, service: CheckoutService, store: SqlStore
) -> None:
    """Cancelled between the first and the second email: no further step runs."""
    name = "cancelled"
    checkout_id, _ = await _report(env, service, name, _policy(*TWO_EMAILS))
    await _after_first_email(env, store, checkout_id)
    await service.cancel(checkout_id)
    await _save_when_done(env, _handle(env, checkout_id), name)


async def _record_send_heartbeat(
    env: WorkflowEnvironment, service: CheckoutService, store: SqlStore
) -> None:
    """Patch "send-heartbeat": the email step's activity is scheduled with a heartbeat timeout;
    its email goes out, then the buyer buys."""
    name = "email_step_with_heartbeat_timeout"
    checkout_id, _ = await _report(env, service, name, _policy(*TWO_EMAILS))
    await _after_first_email(env, store, checkout_id)
    await service.recover(checkout_id, order_id="order-1")
    await _save_when_done(env, _handle(env, checkout_id), name)


async def _record_staff_steps(
    env: WorkflowEnvironment, service: CheckoutService, receiver_url: str
) -> None:
    """A notification step (to the HTTP receiver on loopback) and a task step."""
    name = "notification_and_task_steps"
    policy = _policy(
        {"delay": "1h", "action": "notification", "url": receiver_url},
        {"delay": "2h", "action": "task", "assignee": "sales"},
    )
    checkout_id, _ = await _report(env, service, name, policy)
    await _save_when_done(env, _handle(env, checkout_id), name)


async def _record_stale_report(env: WorkflowEnvironment, service: CheckoutService) -> None:
    """Reported 40 days after the abandonment (max_age 30d): every email step records
    EMAIL_NOT_SENT (stale_report) at once, then the flow listens."""
    name = "email_not_sent_stale_report"
    policy = _policy(*TWO_EMAILS, max_age="30d")
    checkout_id, _ = await _report(env, service, name, policy, abandoned_before=timedelta(days=40))
    await _save_when_done(env, _handle(env, checkout_id), name)


async def _record_conditions_failed(env: WorkflowEnvironment, service: CheckoutService) -> None:
    """Step 1's conditions fail (EMAIL_NOT_SENT with the reason); step 2 sends."""
    name = "email_not_sent_conditions_failed"
    policy = _policy(_email("1h", conditions={"min_total": "100.00"}), _email("2h", "last_chance"))
    checkout_id, _ = await _report(env, service, name, policy)
    await _save_when_done(env, _handle(env, checkout_id), name)


async def _record_frequency_cap_deferral(
    env: WorkflowEnvironment, service: CheckoutService, store: SqlStore
) -> None:
    """Two checkouts of one buyer, cap window 24h, defer: the second checkout's email waits
    for the end of the window (the history recorded is the second one's)."""
    name = "frequency_cap_deferred"
    policy = _policy(_email("1h"), frequency_cap={"window": "24h", "when_capped": "defer"})
    first, _ = await _report(env, service, f"{name}-first", policy, buyer=name)
    await _after_first_email(env, store, first)
    second, _ = await _report(env, service, name, policy, buyer=name)
    await _save_when_done(env, _handle(env, second), name)
    deferred = await store.get(second)
    assert deferred is not None and deferred.activities[-1].type is ActivityType.EMAIL_SENT


async def _record_send_window_wait(env: WorkflowEnvironment, service: CheckoutService) -> None:
    """Step 1 comes due outside the policy's send window and waits for it to open."""
    name = "send_window_wait"
    due = await env.get_current_time() + timedelta(hours=1)
    opens = (due.hour + 3) % 24
    window = {"start": f"{opens:02d}:00", "end": f"{(opens + 2) % 24:02d}:00"}
    checkout_id, _ = await _report(env, service, name, _policy(_email("1h"), send_window=window))
    await _save_when_done(env, _handle(env, checkout_id), name)


# --- the paths of later patches (workflows/abandoned_checkout.py names each patch id) ----------


def _deferred(handle: WorkflowHandle[Any, Any]) -> Callable[[], Awaitable[bool]]:
    """Whether the flow sleeps on a timer started after an activity completed (the deferral)."""

    async def probe() -> bool:
        kinds = [event.event_type for event in (await handle.fetch_history()).events]
        if EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED not in kinds:
            return False
        after = kinds[kinds.index(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) :]
        return EventType.EVENT_TYPE_TIMER_STARTED in after

    return probe


async def _record_unsubscribed_during_deferral(
    env: WorkflowEnvironment, service: CheckoutService, store: SqlStore
) -> None:
    """Patch "unsubscribe-during-deferral": the second checkout's email waits out the cap, the
    buyer unsubscribes meanwhile, and the step records EMAIL_NOT_SENT (unsubscribed) at once."""
    name = "unsubscribed_during_cap_deferral"
    policy = _policy(_email("1h"), frequency_cap={"window": "24h", "when_capped": "defer"})
    first, _ = await _report(env, service, f"{name}-first", policy, buyer=name)
    await _after_first_email(env, store, first)
    second, _ = await _report(env, service, name, policy, buyer=name)
    handle = _handle(env, second)
    await env.sleep(timedelta(hours=2))
    await eventually(_deferred(handle), what="the cap's deferral")
    told = await service.unsubscribe(second)
    assert second in told, told
    await _save_when_done(env, handle, name)
    stored = await store.get(second)
    assert stored is not None
    last = stored.activities[-1]
    assert (last.type, last.reason) == (ActivityType.EMAIL_NOT_SENT, NotSentReason.UNSUBSCRIBED)


# --- the paths of issue 18: a new signal and a new step kind, seen only by flows started on them --


def _sms(delay: str) -> dict[str, Any]:
    return {"delay": delay, "action": "sms", "template": "reminder"}


async def _last_entry(store: SqlStore, checkout_id: str) -> tuple[ActivityType, str | None, str]:
    stored = await store.get(checkout_id)
    assert stored is not None
    last = stored.activities[-1]
    return last.type, last.reason, last.channel or ""


async def _record_email_suppressed(
    env: WorkflowEnvironment, service: CheckoutService, store: SqlStore
) -> None:
    """The relay reports a hard bounce after the first email (the `email_suppressed` signal,
    sent straight to Temporal): step 2 records EMAIL_NOT_SENT (bounced) without its activity."""
    name = "email_suppressed_before_step"
    checkout_id, _ = await _report(env, service, name, _policy(*TWO_EMAILS))
    await _after_first_email(env, store, checkout_id)
    handle = _handle(env, checkout_id)
    await handle.signal(
        EMAIL_SUPPRESSED_SIGNAL, EmailSuppressedSignal(reason=NotSentReason.BOUNCED)
    )
    await _save_when_done(env, handle, name)
    assert await _last_entry(store, checkout_id) == (
        ActivityType.EMAIL_NOT_SENT,
        NotSentReason.BOUNCED,
        "",
    )


async def _record_sms_refused(
    env: WorkflowEnvironment, service: CheckoutService, store: SqlStore
) -> None:
    """An SMS step for a buyer who gave no SMS consent: the decision refuses it and the flow
    records NOTIFICATION_NOT_SENT (channel sms, no_sms_consent)."""
    name = "sms_step_refused_no_consent"
    checkout_id, _ = await _report(env, service, name, _policy(_sms("1h")))
    await _save_when_done(env, _handle(env, checkout_id), name)
    assert await _last_entry(store, checkout_id) == (
        ActivityType.NOTIFICATION_NOT_SENT,
        NotSentReason.NO_SMS_CONSENT,
        "sms",
    )


async def _record_sms_step(
    env: WorkflowEnvironment, service: CheckoutService, store: SqlStore
) -> None:
    """An SMS step due outside the policy's sms_window: the flow waits for the window, then runs
    the SMS activity (the recorder's engine has no provider, so its entry is
    sms_not_configured; the history holds the activity either way)."""
    name = "sms_step_waits_for_window"
    due = await env.get_current_time() + timedelta(hours=1)
    opens = (due.hour + 3) % 24
    window = {"start": f"{opens:02d}:00", "end": f"{(opens + 2) % 24:02d}:00"}
    checkout_id, _ = await _report(
        env,
        service,
        name,
        _policy(_sms("1h"), sms_window=window),
        smsConsent=True,
        contactDetails={"firstName": "Ada", "phone": "+44 20 7946 0958"},
    )
    await _save_when_done(env, _handle(env, checkout_id), name)
    assert await _last_entry(store, checkout_id) == (
        ActivityType.NOTIFICATION_NOT_SENT,
        NotSentReason.SMS_NOT_CONFIGURED,
        "sms",
    )


async def _record_retry_window_to_next_send(
    env: WorkflowEnvironment, service: CheckoutService
) -> None:
    """Patch "retry-window-to-next-send": step 1 is due inside the send window, step 2 after it
    closes, so step 2 runs at the next opening and step 1's retry window is its own 6 h, not
    the two hours to step 2's due time."""
    name = "retry_window_to_next_send_time"
    due = await env.get_current_time() + timedelta(hours=1)
    window = {"start": f"{due.hour:02d}:00", "end": f"{(due.hour + 2) % 24:02d}:00"}
    policy = _policy(
        _email("1h"), _email("3h", "last_chance"), send_window=window, send_retry_window="6h"
    )
    checkout_id, _ = await _report(env, service, name, policy)
    await _save_when_done(env, _handle(env, checkout_id), name)


async def _record_undated_update_repeated(
    env: WorkflowEnvironment, service: CheckoutService, store: SqlStore
) -> None:
    """Patch "dedupe-undated-updates": an undated cart update sent straight to Temporal (the
    service dates its own) twice under reset: the first moves step 2, the repeat is ignored."""
    name = "undated_update_repeated"
    checkout_id, reported = await _report(
        env, service, name, _policy(*TWO_EMAILS, on_cart_update="reset")
    )
    await _after_first_email(env, store, checkout_id)
    undated = reported.model_copy(
        update={"line_items": reported.line_items[:1], "updated_date": None}
    )
    handle = _handle(env, checkout_id)
    await handle.signal(CHECKOUT_UPDATED_SIGNAL, undated)
    await env.sleep(timedelta(minutes=10))
    await handle.signal(CHECKOUT_UPDATED_SIGNAL, undated)
    await _save_when_done(env, handle, name)


@contextlib.asynccontextmanager
async def _stand_in_worker(env: WorkflowEnvironment, stand_ins: StandIns) -> AsyncIterator[str]:
    """A worker running the real workflow against the stand-ins, on a task queue of its own."""
    task_queue = f"record-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[AbandonedCheckoutWorkflow],
        activities=stand_ins.activities,
        workflow_runner=SANDBOX_RUNNER,
    ):
        yield task_queue


def _flow_input(
    name: str, policy: RecoveryPolicy, now: datetime, abandoned_before: timedelta
) -> RecoveryInput:
    abandoned = now - abandoned_before
    checkout = sample_checkout(checkoutId=f"replay-{name}", buyerInfo=_buyer(name))
    return RecoveryInput(
        checkout=checkout.model_copy(update={"id": f"replay-{name}", "created_date": abandoned}),
        policy=policy,
        abandoned_at=abandoned,
        reported_at=now,
    )


async def _record_stale_report_recovered_at_start(env: WorkflowEnvironment) -> None:
    """Patch "stale-report-stops": a stale report whose recovery comes with its start records
    no stale_report entry and closes recovered. (Through the service the recovery would race
    the first record; signal-with-start puts it first.)"""
    name = "stale_report_recovered_at_start"
    policy = _policy(*TWO_EMAILS, max_age="30d")
    now = await env.get_current_time()
    async with _stand_in_worker(env, StandIns()) as task_queue:
        handle = await env.client.start_workflow(
            AbandonedCheckoutWorkflow.run,
            _flow_input(name, policy, now, timedelta(days=40)),
            id=workflow_id_for(f"replay-{name}"),
            task_queue=task_queue,
            start_signal=RECOVERED_SIGNAL,
            start_signal_args=[RecoveredSignal(order_id="order-1")],
        )
        # The test environment's own handle skips time while it waits (no explicit unlock).
        await handle.result()
        await _save(handle, name)


async def _record_task_step_cancelled_while_failing(env: WorkflowEnvironment) -> None:
    """Patch "stop-cancels-staff-step": a task step whose activity keeps failing (it retries
    without limit) is cancelled by the flow's cancel signal."""
    name = "task_step_cancelled_while_failing"
    policy = _policy({"delay": "1h", "action": "task", "assignee": "sales"}, _email("2h"))
    stand_ins = StandIns()
    stand_ins.always(CREATE_TASK, raising(lambda: RuntimeError("a bug in the task store")))
    now = await env.get_current_time()
    async with _stand_in_worker(env, stand_ins) as task_queue:
        handle = await env.client.start_workflow(
            AbandonedCheckoutWorkflow.run,
            _flow_input(name, policy, now, timedelta(0)),
            id=workflow_id_for(f"replay-{name}"),
            task_queue=task_queue,
        )
        await env.sleep(timedelta(minutes=70))
        await stand_ins.called(CREATE_TASK, 3)
        await handle.signal(CANCEL_SIGNAL)
        await handle.result()
        await _save(handle, name)


async def _record_continued_as_new(env: WorkflowEnvironment) -> None:
    """Patch "continue-as-new": cart updates after the first email push the history past
    HISTORY_LIMIT; the flow continues as new and the second run sends step 2. Both runs are
    recorded: the first ends in the continue-as-new, the second starts from the carried state.
    One update at a time near the limit (the time-skipping server mishandles a signal racing
    the continue-as-new; tests/workflows/test_continue_as_new.py says how)."""
    name = "continued_as_new"
    now = await env.get_current_time()
    stand_ins = StandIns()
    async with _stand_in_worker(env, stand_ins) as task_queue:
        handle = await env.client.start_workflow(
            AbandonedCheckoutWorkflow.run,
            _flow_input(name, _policy(*TWO_EMAILS), now, timedelta(0)),
            id=workflow_id_for(f"replay-{name}"),
            task_queue=task_queue,
        )
        await env.sleep(timedelta(hours=2))
        await stand_ins.called(SEND_EMAIL)
        latest = env.client.get_workflow_handle(handle.id)
        base = sample_checkout(checkoutId=f"replay-{name}", buyerInfo=_buyer(name))
        number = 0
        while (await latest.describe()).run_id == handle.first_execution_run_id:
            update = base.model_copy(
                update={"updated_date": now + timedelta(hours=2, milliseconds=number)}
            )
            await latest.signal(CHECKOUT_UPDATED_SIGNAL, update)
            number += 1
            if (await latest.describe()).history_length >= HISTORY_LIMIT - 40:
                await asyncio.sleep(0.2)
        await handle.result()
        first = env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
        await _save(first, f"{name}_first_run")
        await _save(env.client.get_workflow_handle(handle.id), f"{name}_second_run")


async def _record_search_attributes(store: SqlStore, smtp_port: int) -> None:
    """A flow that publishes CheckoutRecoveryStatus and CheckoutRecoveryStep (patch
    "search-attributes"), recovered after its first email.

    On the dev server, which registers the attributes (tests.support.start_dev_server): the
    time-skipping test server has no operator service to register or list them, so a starter
    there never sets publish_search_attributes. Real time, so the delays are seconds.
    """
    name = "search_attributes_published"
    env = await start_dev_server()
    try:
        assert await registered_or_unreachable(env.client), "search attributes not registered"
        settings = engine_settings(smtp_port)
        async with running_engine(env.client, store, settings):
            service = CheckoutService(
                env.client, store, settings.task_queue, search_attributes=True
            )
            policy = _policy(_email("1s"), _email("1h", "last_chance"), listen_window="2s")
            checkout_id, _ = await _report(env, service, name, policy)
            await eventually(_has(store, checkout_id, ActivityType.EMAIL_SENT), what="step 1")
            await service.recover(checkout_id, order_id="order-1")
            handle = _handle(env, checkout_id)
            await handle.result()
            await _save(handle, name)
    finally:
        await env.shutdown()


@contextlib.contextmanager
def _http_receiver() -> Iterator[str]:
    """A tiny staff-notification receiver on loopback that answers 200."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


async def _record_current(
    env: WorkflowEnvironment, service: CheckoutService, store: SqlStore, receiver_url: str
) -> None:
    recordings: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("cart_update_reset", lambda: _record_cart_update(env, service, store, "reset")),
        ("cart_update_keep", lambda: _record_cart_update(env, service, store, "keep")),
        ("unsubscribed", lambda: _record_unsubscribed(env, service, store)),
        (
            "unsubscribed_signal_before_first_step",
            lambda: _record_unsubscribed_signal(env, service),
        ),
        ("cancelled", lambda: _record_cancelled(env, service, store)),
        ("notification_and_task_steps", lambda: _record_staff_steps(env, service, receiver_url)),
        ("email_not_sent_stale_report", lambda: _record_stale_report(env, service)),
        ("email_not_sent_conditions_failed", lambda: _record_conditions_failed(env, service)),
        ("frequency_cap_deferred", lambda: _record_frequency_cap_deferral(env, service, store)),
        ("send_window_wait", lambda: _record_send_window_wait(env, service)),
        (
            "unsubscribed_during_cap_deferral",
            lambda: _record_unsubscribed_during_deferral(env, service, store),
        ),
        ("retry_window_to_next_send_time", lambda: _record_retry_window_to_next_send(env, service)),
        ("undated_update_repeated", lambda: _record_undated_update_repeated(env, service, store)),
        ("stale_report_recovered_at_start", lambda: _record_stale_report_recovered_at_start(env)),
        (
            "task_step_cancelled_while_failing",
            lambda: _record_task_step_cancelled_while_failing(env),
        ),
        ("continued_as_new_second_run", lambda: _record_continued_as_new(env)),
        (
            "email_step_with_heartbeat_timeout",
            lambda: _record_send_heartbeat(env, service, store),
        ),
        ("email_suppressed_before_step", lambda: _record_email_suppressed(env, service, store)),
        ("sms_step_refused_no_consent", lambda: _record_sms_refused(env, service, store)),
        ("sms_step_waits_for_window", lambda: _record_sms_step(env, service, store)),
    ]
    for name, record in recordings:
        if _wanted(name):
            await record()
        else:
            print(f"kept {HISTORIES / f'{name}.json'} (recorded before)")


async def main() -> None:
    HISTORIES.mkdir(exist_ok=True)
    env = await start_time_skipping()
    with tempfile.TemporaryDirectory() as tmp, smtp_server() as smtp, _http_receiver() as url:
        store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp}/store.db")
        await store.create_schema()
        async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
            if RECORD_ALL:
                await _record(env, service, "full_default_policy", None)
                await _record(env, service, "recovered_after_first_email", timedelta(hours=2))
                await _record_duplicate_update_then_purchase(env, service)
            await _record_current(env, service, store, url)
        await env.shutdown()
        if _wanted("search_attributes_published"):
            await _record_search_attributes(store, smtp.port)
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
