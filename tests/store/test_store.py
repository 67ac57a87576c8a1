"""The SQLite store: idempotent writes, send claims, and group commit under concurrency."""

import asyncio
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from domain.activity import ActivityEntry, ActivityType
from domain.checkout import CheckoutStatus
from store.sql import SendClaim, SqlStore
from tests.support import sample_checkout

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


async def _report(store: SqlStore, checkout_id: str, at: datetime = NOW) -> datetime:
    checkout = sample_checkout().model_copy(update={"id": checkout_id, "created_date": NOW})
    return (await store.save_reported(checkout, at)).first_reported_at


async def test_a_second_report_keeps_the_first_scheduled_time(store: SqlStore):
    assert await _report(store, "c-1") == NOW
    assert await _report(store, "c-1", NOW + timedelta(hours=1)) == NOW
    record = await store.get("c-1")
    assert record is not None
    assert [(a.type, a.created_date) for a in record.activities] == [(ActivityType.SCHEDULED, NOW)]


async def test_send_claims_move_from_claimed_to_sent(store: SqlStore):
    await _report(store, "c-1")
    first = await store.begin_send("c-1", "k", "<m@x>", NOW)
    again = await store.begin_send("c-1", "k", "<m@x>", NOW)
    await store.confirm_send(
        "k", "c-1", ActivityEntry(type=ActivityType.EMAIL_SENT, created_date=NOW)
    )
    confirmed = await store.begin_send("c-1", "k", "<m@x>", NOW)
    assert (first.claim, again.claim, confirmed.claim) == (
        SendClaim.CLAIMED,
        SendClaim.IN_DOUBT,
        SendClaim.ALREADY_SENT,
    )


async def test_no_claim_once_recovered_or_unknown(store: SqlStore):
    await _report(store, "c-1")
    assert await store.mark_recovered("c-1", NOW, "o-1")
    assert not await store.mark_recovered("c-1", NOW, "o-2")
    start = await store.begin_send("c-1", "k", "<m@x>", NOW)
    assert start.claim is None
    assert start.checkout is not None and start.checkout.status is CheckoutStatus.RECOVERED
    assert start.checkout.order_id == "o-1"
    missing = await store.begin_send("nope", "k2", "<m@x>", NOW)
    assert (missing.checkout, missing.claim) == (None, None)


async def test_concurrent_writes_all_land_and_a_failing_one_fails_alone(store: SqlStore):
    await _report(store, "c-1")
    entries = [
        store.record_activity(
            "c-1", f"k{i}", ActivityEntry(type=ActivityType.EMAIL_SENT, created_date=NOW, step=i)
        )
        for i in range(200)
    ]

    async def broken(conn):
        await conn.execute(text("INSERT INTO checkouts (id) VALUES ('x')"))  # NOT NULL columns

    results = await asyncio.gather(*entries, store._writes.run(broken), return_exceptions=True)

    assert isinstance(results[-1], IntegrityError)
    assert all(r is None for r in results[:-1])
    record = await store.get("c-1")
    assert record is not None
    assert len(record.activities) == 201


async def test_timestamps_come_back_aware_and_utc(store: SqlStore):
    await _report(store, "c-1")
    in_paris = NOW.astimezone(timezone(timedelta(hours=1)))
    await store.record_activity(
        "c-1", "k", ActivityEntry(type=ActivityType.TASK_CREATED, created_date=in_paris, step=1)
    )
    record = await store.get("c-1")
    assert record is not None
    assert all(a.created_date.tzinfo is UTC for a in record.activities)
    assert all(a.created_date == NOW for a in record.activities)
