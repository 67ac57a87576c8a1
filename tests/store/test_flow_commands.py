"""The hand-off's outbox: every change that must reach a flow writes its command in the same
transaction, on SQLite and PostgreSQL alike."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from domain.checkout import AbandonedCheckout, BuyerIdentity, BuyerInfo, FlowState, StopReason
from domain.events import EventSlug
from domain.flow import (
    BUYER_PURCHASED_SIGNAL,
    CANCEL_SIGNAL,
    CHECKOUT_UPDATED_SIGNAL,
    RECOVERED_SIGNAL,
    UNSUBSCRIBED_SIGNAL,
    WORKFLOW_NAME,
    RecoveredSignal,
)
from store.flow_commands import CommandKind, NewCommand, start_command
from store.outbox import Outbox
from store.sql import Reported, SqlStore
from tests.support import sample_checkout

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _checkout(checkout_id: str, **buyer: str) -> AbandonedCheckout:
    checkout = sample_checkout()
    fields = {**checkout.buyer_info.model_dump(), **buyer}
    if "member_id" in buyer:
        fields["visitor_id"] = None  # a buyer has exactly one of the three ids
    info = BuyerInfo.model_validate(fields)
    return checkout.model_copy(
        update={
            "id": checkout_id,
            "checkout_id": f"shop-{checkout_id}",
            "created_date": NOW,
            "buyer_info": info,
        }
    )


def _start(checkout: AbandonedCheckout) -> NewCommand:
    # Any model stands in for the flow's input here: the store keeps the JSON it is given.
    return start_command(checkout)


def _starter(checkout: AbandonedCheckout) -> Callable[[], NewCommand]:
    return lambda: _start(checkout)


async def _report(store: SqlStore, checkout: AbandonedCheckout, **keys: object) -> None:
    await store.save_reported(checkout, NOW, start=lambda: _start(checkout), **keys)  # type: ignore[arg-type]


async def _commands(store: SqlStore, checkout_id: str) -> list[tuple[CommandKind, str]]:
    pending = await store.commands.pending(checkout_ids=[checkout_id])
    return [(c.kind, c.name) for c in pending]


async def test_a_first_report_writes_its_start_and_a_repeat_writes_nothing(store: SqlStore):
    checkout = _checkout("c-1")
    await _report(store, checkout)
    await _report(store, checkout)

    assert await _commands(store, "c-1") == [(CommandKind.START, WORKFLOW_NAME)]
    record = await store.get("c-1")
    assert record is not None and record.flow_state is FlowState.PENDING


async def test_confirming_marks_the_flow_started_only_when_nothing_is_left(store: SqlStore):
    checkout = _checkout("c-1")
    await _report(store, checkout)
    changed = checkout.model_copy(update={"buyer_language": "de"})
    assert await store.update_snapshot(changed, NOW + timedelta(minutes=1))
    start, update = await store.commands.pending(checkout_ids=["c-1"])
    assert (update.kind, update.name) == (CommandKind.SIGNAL, CHECKOUT_UPDATED_SIGNAL)

    await store.commands.confirm([start])
    record = await store.get("c-1")
    assert record is not None and record.flow_state is FlowState.PENDING

    await store.commands.confirm([update])
    record = await store.get("c-1")
    assert record is not None and record.flow_state is FlowState.STARTED
    assert await store.commands.pending() == []


async def test_a_recovery_signals_its_flow_and_stops_the_buyers_other_checkouts(store: SqlStore):
    same_email = _checkout("c-1", email="Ada@Example.com")
    also_same_email = _checkout("c-2", email="ada@example.com")
    same_contact = _checkout("c-3", email="other@example.com", contact_id="contact-9")
    recovered = _checkout("c-4", email="ada@example.com", contact_id="contact-9")
    stranger = _checkout("c-5", email="someone@example.com")
    for checkout in (same_email, also_same_email, same_contact, recovered, stranger):
        await _report(store, checkout)
        await store.commands.confirm(await store.commands.pending(checkout_ids=[checkout.id or ""]))

    recovery = await store.mark_recovered("c-4", NOW, "order-1")

    assert recovery is not None and sorted(recovery.stopped) == ["c-1", "c-2", "c-3"]
    [signal] = await store.commands.pending(checkout_ids=["c-4"])
    assert (signal.kind, signal.name) == (CommandKind.SIGNAL, RECOVERED_SIGNAL)
    assert signal.payload is not None
    assert RecoveredSignal.model_validate_json(signal.payload).order_id == "order-1"
    for other in ("c-1", "c-2", "c-3"):
        assert await _commands(store, other) == [(CommandKind.SIGNAL, BUYER_PURCHASED_SIGNAL)]
        record = await store.get(other)
        assert record is not None
        assert record.stop_reason is StopReason.BUYER_PURCHASED
        assert record.status.value == "ABANDONED" and record.recovery_attribution is None
    assert await _commands(store, "c-5") == []
    slugs = [e.slug for e in await Outbox(store.engine).pending(limit=1000)]
    assert slugs.count(EventSlug.RECOVERED) == 1 and slugs.count(EventSlug.UPDATED) == 3
    # A second recovery changes nothing and writes nothing.
    assert await store.mark_recovered("c-4", NOW, "order-2") is None
    assert len(await store.commands.pending(checkout_ids=["c-4"])) == 1


async def test_stop_checkout_policy_leaves_the_buyers_other_flows_alone(store: SqlStore):
    await _report(store, _checkout("c-1"))
    await _report(store, _checkout("c-2"), on_purchase="stop_checkout")

    recovery = await store.mark_recovered("c-2", NOW, None)

    assert recovery is not None and recovery.stopped == []
    record = await store.get("c-1")
    assert record is not None and record.stop_reason is None


async def test_recover_buyer_recovers_the_newest_open_checkout_and_stops_the_rest(
    store: SqlStore,
):
    older, newer = _checkout("c-1", member_id="m-1"), _checkout("c-2", member_id="m-1")
    await _report(store, older)
    await _report(store, newer)
    assert await store.update_snapshot(
        newer.model_copy(update={"buyer_language": "fr"}), NOW + timedelta(minutes=5)
    )
    recovered, stopped = await store.recover_buyer(
        BuyerIdentity(member_id="m-1"), "order-5", NOW + timedelta(minutes=9)
    )

    assert (recovered, stopped) == ("c-2", ["c-1"])
    record = await store.get("c-2")
    assert record is not None and record.order_id == "order-5"
    assert await store.recover_buyer(BuyerIdentity(member_id="m-1"), "o", NOW) == (None, [])


async def test_cancel_unsubscribe_and_erase_write_their_commands(store: SqlStore):
    for checkout_id in ("c-1", "c-2", "c-3"):
        await _report(store, _checkout(checkout_id))
        await store.commands.confirm(await store.commands.pending(checkout_ids=[checkout_id]))

    assert await store.stop("c-1", NOW)
    assert not await store.stop("c-1", NOW)  # harmless to repeat, writes nothing more
    assert await _commands(store, "c-1") == [(CommandKind.SIGNAL, CANCEL_SIGNAL)]
    record = await store.get("c-1")
    assert record is not None and record.stop_reason is StopReason.CANCELLED

    told = await store.unsubscribe("ADA@example.com", NOW)
    assert sorted(told) == ["c-2", "c-3"]  # c-1's flow is stopped already
    assert await _commands(store, "c-2") == [(CommandKind.SIGNAL, UNSUBSCRIBED_SIGNAL)]

    # Erasing drops what still waits (it holds the buyer's data) and asks for the delete.
    assert await store.erase("c-2", NOW)
    [delete] = await store.commands.pending(checkout_ids=["c-2"])
    assert (delete.kind, delete.payload) == (CommandKind.DELETE, None)


async def test_pending_keeps_each_checkouts_order_and_failures_are_counted(store: SqlStore):
    await _report(store, _checkout("c-1"))
    await _report(store, _checkout("c-2"))
    assert await store.stop("c-1", NOW)

    pending = await store.commands.pending()
    assert [(c.checkout_id, c.kind) for c in pending] == [
        ("c-1", CommandKind.START),
        ("c-2", CommandKind.START),
        ("c-1", CommandKind.SIGNAL),
    ]
    await store.commands.note_failure(pending[:1], "RPCError: unavailable")
    again = await store.commands.pending(limit=1)
    assert (again[0].attempts, again[0].last_error) == (1, "RPCError: unavailable")
    backlog = await store.commands.backlog()
    assert backlog.count == 3 and backlog.oldest is not None
    assert backlog.oldest <= datetime.now(UTC)
    assert await store.commands.checkout_ids() == {"c-1", "c-2"}


async def test_reports_arriving_together_are_written_together_and_fail_alone(
    store: SqlStore, database_url: str
):
    checkouts = [_checkout(f"c-{n}") for n in range(8)]
    repeat = checkouts[3]
    # PostgreSQL refuses a NUL in text; SQLite keeps it. Either way the others are unharmed.
    spoiled = _checkout("c-bad").model_copy(update={"checkout_id": "shop-\x00"})
    reported = await asyncio.gather(
        *(store.save_reported(c, NOW, start=_starter(c)) for c in [*checkouts, repeat, spoiled]),
        return_exceptions=True,
    )

    first, second = reported[3], reported[8]
    assert isinstance(first, Reported) and isinstance(second, Reported)
    assert first.new and first.start is not None
    assert not second.new and second.start is None  # the same checkout, once
    for result in reported[:8]:
        assert isinstance(result, Reported) and result.new
    if database_url.startswith("postgresql"):
        assert isinstance(reported[9], Exception)
    pending = await store.commands.pending()
    expected = {c.id for c in checkouts} | (
        set() if database_url.startswith("postgresql") else {"c-bad"}
    )
    assert {c.checkout_id for c in pending} == expected
    assert len(pending) == len(expected)  # one start each
    for checkout in checkouts:
        record = await store.get(checkout.id or "")
        assert record is not None and [a.type.value for a in record.activities] == ["SCHEDULED"]
