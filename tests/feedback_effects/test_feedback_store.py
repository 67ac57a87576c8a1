"""What a relay's bounce or complaint does in the store (store.feedback), on SQLite and PostgreSQL:
a hard bounce suppresses the address in every shop, a complaint in the shop that sent, a soft
bounce is only counted; the sent email's entry gets its outcome, the buyer's open flows their
signal, and a provider's retry changes nothing."""

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from domain.activity import ActivityEntry, ActivityType
from domain.checkout import AbandonedCheckout
from domain.feedback import FeedbackKind, FeedbackReport
from domain.flow import EMAIL_SUPPRESSED_SIGNAL, step_key, workflow_id_for
from service.checkouts import derive_checkout_id
from store.email_limits import address_key
from store.feedback import FeedbackStore
from store.flow_commands import CommandKind
from store.schema import email_feedback, suppressions
from store.sql import SqlStore
from tests.support import sample_checkout

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=2)
A, B = "shop-a", "shop-b"
ADA = "ada@example.com"


def _checkout(shop_id: str, checkout_id: str = "co-1001", email: str = ADA) -> AbandonedCheckout:
    reported = sample_checkout(
        checkoutId=checkout_id, buyerInfo={"email": email, "visitorId": "visitor-1"}
    )
    return reported.model_copy(
        update={"id": derive_checkout_id(reported, shop_id), "created_date": NOW}
    )


async def _report(store: SqlStore, shop_id: str, checkout_id: str = "co-1001") -> str:
    checkout = _checkout(shop_id, checkout_id)
    await store.save_reported(checkout, NOW, shop_id=shop_id)
    assert checkout.id is not None
    return checkout.id


async def _sent(store: SqlStore, checkout_id: str, step: int = 1) -> str:
    """Step `step`'s email went out, as the email activity records it; its bare Message-ID."""
    key = step_key(workflow_id_for(checkout_id), step - 1)
    message_id = f"{checkout_id}.{step}.recovery@shop.test"
    start = await store.begin_send(checkout_id, key, f"<{message_id}>", NOW)
    assert start.claim is not None
    entry = ActivityEntry(type=ActivityType.EMAIL_SENT, created_date=NOW, step=step)
    await store.confirm_send(key, checkout_id, entry)
    return message_id


def _report_of(
    kind: FeedbackKind, message_id: str | None, email: str = ADA, provider: str = "generic"
) -> FeedbackReport:
    return FeedbackReport(
        provider=provider, kind=kind, email=email, message_id=message_id, occurred_at=LATER
    )


async def _signals(store: SqlStore, checkout_id: str) -> list[str | None]:
    """The reasons of the email_suppressed signals waiting for the checkout's flow."""
    pending = await store.commands.pending(checkout_ids=[checkout_id])
    return [
        json.loads(c.payload)["reason"] if c.payload else None
        for c in pending
        if c.kind is CommandKind.SIGNAL and c.name == EMAIL_SUPPRESSED_SIGNAL
    ]


async def _suppressions(store: SqlStore, email: str = ADA) -> list[tuple[str | None, str | None]]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(suppressions.c.shop_id, suppressions.c.reason)
            .where(suppressions.c.address_key == address_key(email))
            .order_by(suppressions.c.seq)
        )
        return [(r.shop_id, r.reason) for r in rows]


async def _first_entry(store: SqlStore, checkout_id: str, kind: ActivityType) -> ActivityEntry:
    found = await store.get(checkout_id)
    assert found is not None
    return next(a for a in found.activities if a.type is kind)


async def test_a_hard_bounce_suppresses_the_address_in_every_shop(store: SqlStore):
    in_a = await _report(store, A)
    in_b = await _report(store, B)
    message_id = await _sent(store, in_a)

    done = await FeedbackStore(store).record_feedback(
        [_report_of(FeedbackKind.HARD_BOUNCE, f"<{message_id}>")], NOW + timedelta(hours=3)
    )

    assert (done.received, done.recorded, done.suppressed) == (1, 1, 1)
    assert await _suppressions(store) == [(None, "bounced")]
    # Every shop's next send is refused, with the reason.
    for checkout_id in (in_a, in_b):
        assert (await store.check_send(checkout_id, "k", NOW)).suppressed_because == "bounced"
    # The email's entry gets the relay's later word; both buyers' flows are told.
    sent = await _first_entry(store, in_a, ActivityType.EMAIL_SENT)
    assert (sent.outcome, sent.outcome_date) == ("bounced", LATER)
    assert sorted(done.flows_told) == sorted([in_a, in_b])
    assert await _signals(store, in_a) == ["bounced"]
    assert await _signals(store, in_b) == ["bounced"]
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(email_feedback))).one()
    assert (row.provider, row.kind, row.checkout_id, row.step, row.shop_id) == (
        "generic",
        "hard_bounce",
        in_a,
        1,
        A,
    )
    assert row.message_id == message_id and row.address_key == address_key(ADA)
    assert ADA not in json.dumps([str(v) for v in row])  # the address itself is not kept


async def test_a_complaint_suppresses_the_address_in_the_sending_shop_only(store: SqlStore):
    in_a = await _report(store, A)
    in_b = await _report(store, B)
    message_id = await _sent(store, in_a)

    done = await FeedbackStore(store).record_feedback(
        [_report_of(FeedbackKind.COMPLAINT, message_id)], NOW
    )

    assert done.suppressed == 1 and done.flows_told == [in_a]
    assert await _suppressions(store) == [(A, "complained")]
    assert (await store.check_send(in_a, "k", NOW)).suppressed_because == "complained"
    in_b_state = await store.check_send(in_b, "k", NOW)
    assert not in_b_state.suppressed and in_b_state.claim is not None
    assert (await _first_entry(store, in_a, ActivityType.EMAIL_SENT)).outcome == "complained"
    assert await _signals(store, in_a) == ["complained"]
    assert await _signals(store, in_b) == []


async def test_a_complaint_about_an_email_not_ours_holds_in_every_shop_of_the_address(
    store: SqlStore,
):
    in_a = await _report(store, A)
    in_b = await _report(store, B)
    await _report(store, "shop-c", "co-other")  # the same buyer: shop C has one too
    other = _checkout(A, "co-bob", email="bob@example.com")
    await store.save_reported(other, NOW, shop_id=A)

    done = await FeedbackStore(store).record_feedback(
        [_report_of(FeedbackKind.COMPLAINT, "<not-ours@elsewhere.example>")], NOW
    )

    assert done.suppressed == 3
    assert sorted(await _suppressions(store)) == [
        (A, "complained"),
        (B, "complained"),
        ("shop-c", "complained"),
    ]
    assert await _suppressions(store, "bob@example.com") == []
    assert in_a in done.flows_told and in_b in done.flows_told and len(done.flows_told) == 3
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(email_feedback))).one()
    assert (row.checkout_id, row.step, row.shop_id) == (None, None, None)


async def test_a_soft_bounce_is_counted_only(store: SqlStore):
    in_a = await _report(store, A)
    message_id = await _sent(store, in_a)

    done = await FeedbackStore(store).record_feedback(
        [_report_of(FeedbackKind.SOFT_BOUNCE, message_id)], NOW
    )

    assert (done.recorded, done.suppressed, done.flows_told) == (1, 0, [])
    assert await _suppressions(store) == []
    assert (await _first_entry(store, in_a, ActivityType.EMAIL_SENT)).outcome is None
    assert await _signals(store, in_a) == []
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(email_feedback))).one()
    assert (row.kind, row.checkout_id, row.step) == ("soft_bounce", in_a, 1)


async def test_a_providers_retry_counts_once(store: SqlStore):
    in_a = await _report(store, A)
    message_id = await _sent(store, in_a)
    feedback = FeedbackStore(store)
    bounce = _report_of(FeedbackKind.HARD_BOUNCE, message_id)

    first = await feedback.record_feedback([bounce], NOW)
    again = await feedback.record_feedback([bounce, bounce], NOW + timedelta(minutes=5))

    assert (first.recorded, first.suppressed) == (1, 1)
    assert (again.received, again.recorded, again.suppressed, again.flows_told) == (2, 0, 0, [])
    async with store.engine.connect() as conn:
        assert len((await conn.execute(select(email_feedback))).all()) == 1
    assert await _suppressions(store) == [(None, "bounced")]
    assert await _signals(store, in_a) == ["bounced"]
    # Another provider's report of the same bounce is a report of its own.
    other = await feedback.record_feedback(
        [_report_of(FeedbackKind.HARD_BOUNCE, message_id, provider="ses")], NOW
    )
    assert (other.recorded, other.suppressed) == (1, 0)  # the address keeps its one row


async def test_a_bounce_with_an_unknown_message_id_still_suppresses_everywhere(store: SqlStore):
    in_a = await _report(store, A)

    done = await FeedbackStore(store).record_feedback(
        [_report_of(FeedbackKind.HARD_BOUNCE, None, email="ADA@Example.com")], NOW
    )

    assert done.suppressed == 1 and done.flows_told == [in_a]
    assert await _suppressions(store) == [(None, "bounced")]
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(email_feedback))).one()
    assert (row.message_id, row.checkout_id) == (None, None)


async def test_an_address_suppressed_already_keeps_its_first_reason(store: SqlStore):
    in_a = await _report(store, A)
    message_id = await _sent(store, in_a)
    await store.unsubscribe(ADA, NOW, shop_id=A)

    await FeedbackStore(store).record_feedback(
        [_report_of(FeedbackKind.COMPLAINT, message_id)], NOW
    )

    assert await _suppressions(store) == [(A, None)]  # the unsubscribe's row, from before reasons
    assert (await store.check_send(in_a, "k", NOW)).suppressed_because == "unsubscribed"
