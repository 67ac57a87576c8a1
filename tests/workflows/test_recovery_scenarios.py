"""Recovery flows on the time-skipping test server: days of policy in seconds of wall time.

Each scenario runs the real worker (real activities) against a real SMTP server on loopback and a
real SQLite store, and checks what a shop would check: the activity entries, their times, the mail.
"""

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from domain.activity import ActivityType, NotSentReason
from domain.checkout import AbandonedCheckout, CheckoutStatus
from domain.flow import workflow_id_for
from store.sql import SqlStore
from tests.support import (
    SmtpServer,
    body_text,
    default_policy_any_hour,
    engine_settings,
    eventually,
    running_engine,
    sample_checkout,
    seconds_between,
)
from tests.workflows.scenarios import (
    entries,
    flow_result,
    has_entry,
    report_now,
    skip_past_first_step,
)

DEFAULT = default_policy_any_hour()
# A timer fires at its due time; the workflow task that runs the step follows within moments.
DUE_TOLERANCE_SECONDS = 5.0


async def test_full_default_policy_runs_every_step_at_its_due_time(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, reported = await report_now(service, env, sample_checkout())
        result = await flow_result(service, env, checkout_id)

    assert result.status == CheckoutStatus.ABANDONED
    assert result.closed_because == "window_elapsed"
    assert result.steps_run == 3
    record = await store.get(checkout_id)
    assert record is not None
    assert [a.type for a in record.activities] == [
        ActivityType.SCHEDULED,
        ActivityType.EMAIL_SENT,
        ActivityType.EMAIL_SENT,
        ActivityType.TASK_CREATED,
    ]
    assert reported.created_date is not None
    for entry, step in zip(record.activities[1:], DEFAULT.steps, strict=True):
        offset = seconds_between(entry.created_date, reported.created_date)
        assert abs(offset - step.delay.total_seconds()) < DUE_TOLERANCE_SECONDS, (entry, offset)

    subjects = [m["Subject"] for m in smtp.handler.messages]
    assert subjects == [
        "Ada, you left something in your cart at Test Shop",
        "Last chance: your cart at Test Shop is about to expire",
    ]
    assert all(m["To"] == "Ada Lovelace <ada@example.com>" for m in smtp.handler.messages)
    tasks = await store.list_tasks()
    assert [(t.checkout_id, t.assignee) for t in tasks] == [(checkout_id, "sales")]
    assert "Ada Lovelace" in tasks[0].title and "€89.90" in tasks[0].title
    assert tasks[0].due_date - tasks[0].created_date == timedelta(days=1)
    assert tasks[0].link.endswith(f"/workflows/{workflow_id_for(checkout_id)}")


async def test_recovery_before_step_two_stops_the_flow(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, _ = await report_now(service, env, sample_checkout())
        await skip_past_first_step(env, store, checkout_id)
        recovered_at = await env.get_current_time()
        await service.recover(checkout_id, order_id="order-77", recovered_at=recovered_at)
        result = await flow_result(service, env, checkout_id)
        query = await service.handle(checkout_id).query("checkout", result_type=AbandonedCheckout)

    assert result.closed_because == "recovered"
    assert result.steps_run == 1
    record = await store.get(checkout_id)
    assert record is not None
    assert record.status == CheckoutStatus.RECOVERED
    assert record.checkout_recovered_date == recovered_at
    assert record.order_id == "order-77"
    assert [a.type for a in record.activities] == [ActivityType.SCHEDULED, ActivityType.EMAIL_SENT]
    assert len(smtp.handler.messages) == 1
    assert query.status == CheckoutStatus.RECOVERED
    assert query.checkout_recovered_date == recovered_at


async def test_recovery_after_last_step_inside_the_window(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, _ = await report_now(service, env, sample_checkout())
        await env.sleep(timedelta(days=4))
        await eventually(has_entry(store, checkout_id, ActivityType.TASK_CREATED), what="task")
        await service.recover(checkout_id)
        result = await flow_result(service, env, checkout_id)

    assert result.closed_because == "recovered"
    assert result.steps_run == 3
    record = await store.get(checkout_id)
    assert record is not None and record.status == CheckoutStatus.RECOVERED
    assert record.checkout_recovered_date is not None
    assert len(smtp.handler.messages) == 2


async def test_the_same_checkout_reported_twice_has_one_flow(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    checkout = sample_checkout()
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, reported = await report_now(service, env, checkout)
        first_run = (await service.handle(checkout_id).describe()).run_id
        again = await service.report(reported, DEFAULT, now=await env.get_current_time())
        assert again.checkout_id == checkout_id
        assert not again.new
        assert (await service.handle(checkout_id).describe()).run_id == first_run
        await skip_past_first_step(env, store, checkout_id)
        await service.cancel(checkout_id)
        result = await flow_result(service, env, checkout_id)
        # Once the flow is closed, a third report still starts nothing.
        third = await service.report(reported, DEFAULT, now=await env.get_current_time())
        assert not third.new
        assert (await service.handle(checkout_id).describe()).run_id == first_run

    assert result.closed_because == "cancelled"
    assert [t for t, _ in await entries(store, checkout_id)] == [
        ActivityType.SCHEDULED,
        ActivityType.EMAIL_SENT,
    ]
    assert len(smtp.handler.messages) == 1


async def test_checkout_update_changes_what_the_next_email_shows(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, reported = await report_now(service, env, sample_checkout())
        await skip_past_first_step(env, store, checkout_id)
        updated = reported.model_copy(
            update={
                "line_items": [
                    reported.line_items[0].model_copy(update={"name": "Wool scarf", "quantity": 1})
                ],
                "total_price": reported.total_price.model_copy(
                    update={"amount": "30.00", "formatted_amount": "€30.00"}
                ),
            }
        )
        await service.update(updated)
        await env.sleep(timedelta(days=1))
        await eventually(
            has_entry(store, checkout_id, ActivityType.EMAIL_SENT, count=2), what="email 2"
        )
        query = await service.handle(checkout_id).query("checkout", result_type=AbandonedCheckout)
        await service.cancel(checkout_id)
        await flow_result(service, env, checkout_id)

    first, second = smtp.handler.messages
    assert "Linen shirt" in body_text(first, "plain")
    for subtype in ("plain", "html"):
        assert "Wool scarf" in body_text(second, subtype)
        assert "Linen shirt" not in body_text(second, subtype)
        assert "€30.00" in body_text(second, subtype)
    assert [item.name for item in query.line_items] == ["Wool scarf"]
    assert [a.type for a in query.activities][:3] == [
        ActivityType.SCHEDULED,
        ActivityType.EMAIL_SENT,
        ActivityType.EMAIL_SENT,
    ]


async def test_invalid_address_is_recorded_and_the_flow_goes_on(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    smtp.handler.rejected_recipients.add("nobody@example.com")
    checkout = sample_checkout(buyerInfo={"email": "nobody@example.com", "memberId": "m-1"})
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, _ = await report_now(service, env, checkout)
        result = await flow_result(service, env, checkout_id)

    assert result.steps_run == 3
    assert await entries(store, checkout_id) == [
        (ActivityType.SCHEDULED, None),
        (ActivityType.EMAIL_NOT_SENT, NotSentReason.INVALID_ADDRESS),
        (ActivityType.EMAIL_NOT_SENT, NotSentReason.INVALID_ADDRESS),
        (ActivityType.TASK_CREATED, None),
    ]
    assert smtp.handler.messages == []


async def test_smtp_refusing_for_a_while_then_accepting_sends_once(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    smtp.handler.refuse_data = 3
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, _ = await report_now(service, env, sample_checkout())
        await skip_past_first_step(env, store, checkout_id, timeout=60)
        await service.cancel(checkout_id)
        await flow_result(service, env, checkout_id)

    assert smtp.handler.refusals == 3
    assert len(smtp.handler.messages) == 1
    assert await entries(store, checkout_id) == [
        (ActivityType.SCHEDULED, None),
        (ActivityType.EMAIL_SENT, None),
    ]


async def test_no_email_once_the_store_says_recovered(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    """A recovery written to the store whose signal has not reached the flow yet still wins."""
    env = time_skipping_env
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, _ = await report_now(service, env, sample_checkout())
        assert await store.mark_recovered(checkout_id, await env.get_current_time(), None)
        await skip_past_first_step(env, store, checkout_id, ActivityType.EMAIL_NOT_SENT)
        await service.cancel(checkout_id)
        await flow_result(service, env, checkout_id)

    assert (await entries(store, checkout_id))[1] == (
        ActivityType.EMAIL_NOT_SENT,
        NotSentReason.RECOVERED,
    )
    assert smtp.handler.messages == []


async def test_recovery_signal_before_the_first_step(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, _ = await report_now(service, env, sample_checkout())
        await service.recover(checkout_id, order_id="o-1")
        result = await flow_result(service, env, checkout_id)

    assert result.steps_run == 0
    assert result.closed_because == "recovered"
    assert smtp.handler.messages == []
