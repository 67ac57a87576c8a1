"""The seam between the store and the flow, on the time-skipping server with real SMTP and store:
a purchase stops every flow of its buyer, a lost signal still stops staff steps, a duplicated
update changes nothing, and a relay outage delays email without dropping it."""

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from aiosmtpd.controller import Controller
from temporalio.testing import WorkflowEnvironment

from domain.activity import ActivityType, NotSentReason
from domain.checkout import AbandonedCheckout, CheckoutStatus, FlowState, StopReason
from domain.flow import CHECKOUT_UPDATED_SIGNAL, ClosedBecause
from domain.policy import RecoveryPolicy, parse_policy
from store.schema import tasks
from store.sql import SqlStore
from tests.ports import free_port
from tests.support import (
    RecordingSmtpHandler,
    SmtpServer,
    engine_settings,
    eventually,
    running_engine,
    sample_checkout,
    seconds_between,
)
from tests.workflows.scenarios import entries, flow_result, has_entry, report_now


def _policy(*steps: dict[str, Any], **keys: Any) -> RecoveryPolicy:
    values = {"name": "test", "listen_window": "1h", "frequency_cap": {"window": "0s"}}
    return parse_policy({**values, **keys, "steps": list(steps)}, "test")


def _email(delay: str) -> dict[str, Any]:
    return {"delay": delay, "action": "email", "template": "reminder"}


THREE_STEPS = _policy(
    _email("1h"), _email("24h"), {"delay": "72h", "action": "task", "assignee": "sales"}
)


def _of_buyer(number: int) -> AbandonedCheckout:
    """One of the same buyer's checkouts (same email, each its own cart)."""
    return sample_checkout().model_copy(
        update={"checkout_id": f"cart-{number}", "cart_id": f"cart-{number}"}
    )


async def test_a_purchase_stops_every_open_flow_of_the_buyer(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        ids = [(await report_now(service, env, _of_buyer(n), THREE_STEPS))[0] for n in range(3)]
        await env.sleep(timedelta(hours=2))
        for checkout_id in ids:
            await eventually(has_entry(store, checkout_id, ActivityType.EMAIL_SENT))
        mailed_before = len(smtp.handler.messages)
        await service.recover(ids[0], order_id="order-1", recovered_at=await env.get_current_time())
        results = [await flow_result(service, env, checkout_id) for checkout_id in ids]
        await env.sleep(timedelta(days=4))

    assert mailed_before == 3
    assert len(smtp.handler.messages) == 3  # nothing on any of them after the purchase
    assert [r.closed_because for r in results] == [
        ClosedBecause.RECOVERED,
        ClosedBecause.BUYER_PURCHASED,
        ClosedBecause.BUYER_PURCHASED,
    ]
    recovered = await store.get(ids[0])
    assert recovered is not None and recovered.status is CheckoutStatus.RECOVERED
    for other in ids[1:]:
        record = await store.get(other)
        assert record is not None
        # Their own outcome: still ABANDONED (no revenue), with the reason they stopped.
        assert record.status is CheckoutStatus.ABANDONED
        assert record.stop_reason is StopReason.BUYER_PURCHASED
        assert record.recovery_attribution is None
        assert record.flow_state is FlowState.STARTED
        assert [a.type for a in record.activities] == [
            ActivityType.SCHEDULED,
            ActivityType.EMAIL_SENT,
        ]
    async with store.engine.connect() as conn:
        assert (await conn.execute(tasks.select())).all() == []


async def test_stop_checkout_policy_keeps_the_buyers_other_flows_going(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    policy = _policy(_email("1h"), _email("24h"), on_purchase="stop_checkout")
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        first, _ = await report_now(service, env, _of_buyer(1), policy)
        second, _ = await report_now(service, env, _of_buyer(2), policy)
        await service.recover(first, recovered_at=await env.get_current_time())
        await env.sleep(timedelta(hours=25))
        await eventually(has_entry(store, second, ActivityType.EMAIL_SENT, count=2))
        result = await flow_result(service, env, second)

    assert result.closed_because == ClosedBecause.WINDOW_ELAPSED
    assert len(smtp.handler.messages) == 2


async def test_a_recovery_whose_signal_was_lost_still_stops_the_staff_step(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    """The recovery is in the store but the flow never hears of it (a signal lost before the
    hand-off existed): the task step reads the store and creates nothing."""
    env = time_skipping_env
    policy = _policy({"delay": "1h", "action": "task", "assignee": "sales"})
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, _ = await report_now(service, env, sample_checkout(), policy)
        now = await env.get_current_time()
        assert await store.mark_recovered(checkout_id, now, None, signal_flow=False)
        result = await flow_result(service, env, checkout_id)

    assert result.closed_because == ClosedBecause.WINDOW_ELAPSED  # it never heard
    assert await entries(store, checkout_id) == [
        (ActivityType.SCHEDULED, None),
        (ActivityType.TASK_NOT_CREATED, NotSentReason.RECOVERED),
    ]
    async with store.engine.connect() as conn:
        assert (await conn.execute(tasks.select())).all() == []


async def test_a_cart_update_delivered_twice_moves_the_schedule_once(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    """The hand-off delivers at least once: a repeated update must not restart the delays."""
    env = time_skipping_env
    policy = _policy(_email("1h"), on_cart_update="reset")
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, checkout = await report_now(service, env, sample_checkout(), policy)
        await env.sleep(timedelta(minutes=30))
        updated_at = await env.get_current_time()
        snapshot = checkout.model_copy(update={"id": checkout_id, "updated_date": updated_at})
        handle = service.handle(checkout_id)
        await handle.signal(CHECKOUT_UPDATED_SIGNAL, snapshot)
        await env.sleep(timedelta(minutes=20))
        await handle.signal(CHECKOUT_UPDATED_SIGNAL, snapshot)  # the same update again
        await env.sleep(timedelta(hours=2))
        await eventually(has_entry(store, checkout_id, ActivityType.EMAIL_SENT))
        found = await store.get(checkout_id)
        await service.cancel(checkout_id)

    assert found is not None
    [sent] = [a for a in found.activities if a.type is ActivityType.EMAIL_SENT]
    # Due an hour after the first delivery of the update, not after the duplicate.
    assert abs(seconds_between(sent.created_date, updated_at + timedelta(hours=1))) < 5


@contextlib.contextmanager
def _relay(handler: RecordingSmtpHandler, port: int) -> Iterator[None]:
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


async def test_a_relay_down_for_45_minutes_delays_the_email_and_sends_it_once(
    time_skipping_env: WorkflowEnvironment, store: SqlStore
) -> None:
    env = time_skipping_env
    handler, port = RecordingSmtpHandler(), free_port()
    policy = _policy(_email("1h"), _email("24h"))
    async with running_engine(env.client, store, engine_settings(port)) as service:
        checkout_id, _ = await report_now(service, env, sample_checkout(), policy)
        due = await env.get_current_time() + timedelta(hours=1)
        # Nothing listens on the relay's port: every attempt is refused.
        await env.sleep(timedelta(hours=1, minutes=45))
        assert handler.messages == []
        assert await entries(store, checkout_id) == [(ActivityType.SCHEDULED, None)]
        with _relay(handler, port):

            async def sent() -> bool:
                await env.sleep(timedelta(minutes=1))  # on to the next retry
                return bool(await has_entry(store, checkout_id, ActivityType.EMAIL_SENT)())

            await eventually(sent, timeout=60, what="the email after the relay came back")
            await service.cancel(checkout_id)

    assert len(handler.messages) == 1
    found = await store.get(checkout_id)
    assert found is not None
    assert [a.type for a in found.activities] == [ActivityType.SCHEDULED, ActivityType.EMAIL_SENT]
    assert seconds_between(found.activities[1].created_date, due) < 5  # recorded at its due time


async def test_an_outage_past_the_next_steps_due_time_gives_up_for_that_step(
    time_skipping_env: WorkflowEnvironment, store: SqlStore
) -> None:
    """A reminder must not overtake the next one: step 1 stops trying when step 2 is due."""
    env = time_skipping_env
    handler, port = RecordingSmtpHandler(), free_port()
    policy = _policy(_email("1h"), _email("2h"))
    async with running_engine(env.client, store, engine_settings(port)) as service:
        checkout_id, _ = await report_now(service, env, sample_checkout(), policy)
        await env.sleep(timedelta(hours=2, minutes=10))
        await eventually(has_entry(store, checkout_id, ActivityType.EMAIL_NOT_SENT))
        with _relay(handler, port):

            async def sent() -> bool:
                await env.sleep(timedelta(minutes=1))
                return bool(await has_entry(store, checkout_id, ActivityType.EMAIL_SENT)())

            await eventually(sent, timeout=60, what="step 2 after the relay came back")
            await service.cancel(checkout_id)

    assert await entries(store, checkout_id) == [
        (ActivityType.SCHEDULED, None),
        (ActivityType.EMAIL_NOT_SENT, NotSentReason.SMTP_UNAVAILABLE),
        (ActivityType.EMAIL_SENT, None),
    ]
    assert len(handler.messages) == 1
