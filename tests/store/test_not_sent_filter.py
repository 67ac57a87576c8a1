"""The checkout list's "not sent because" filter, on both databases: a checkout matches when one
of its emails was not sent for the reason (with or without the reason's details), only emails
count, erased checkouts never show, cursor pages keep to it, and the index serves it."""

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.activity import ActivityEntry, ActivityType
from domain.query import CheckoutPage, parse_query
from store.checkout_query import page_statement
from store.sql import SqlStore
from tests.store.test_query_scale import _plan
from tests.support import sample_checkout

START = datetime(2026, 11, 1, tzinfo=UTC)
NEWEST_FIRST = [{"fieldName": "createdDate", "order": "DESC"}]


async def _checkout(store: SqlStore, index: int, *entries: tuple[ActivityType, str]) -> str:
    checkout_id = f"c{index}"
    at = START + timedelta(hours=index)
    checkout = sample_checkout().model_copy(update={"id": checkout_id, "created_date": at})
    await store.save_reported(checkout, at)
    for step, (kind, reason) in enumerate(entries, start=1):
        entry = ActivityEntry(type=kind, created_date=at, step=step, reason=reason)
        await store.record_activity(checkout_id, f"k{step}", entry)
    return checkout_id


async def _ids(store: SqlStore, not_sent: str, **query: Any) -> list[str]:
    page = await store.query(
        parse_query({"query": {"sort": NEWEST_FIRST, **query}}), not_sent=not_sent
    )
    return [c.id or "" for c in page.checkouts]


async def test_a_checkout_matches_by_the_reason_of_an_email_not_sent(store: SqlStore):
    email, staff = ActivityType.EMAIL_NOT_SENT, ActivityType.NOTIFICATION_NOT_SENT
    details = await _checkout(
        store, 1, (ActivityType.EMAIL_SENT, ""), (email, "condition_failed:min_total")
    )
    bare = await _checkout(store, 2, (email, "condition_failed"))
    consent = await _checkout(store, 3, (email, "no_consent"))
    await _checkout(store, 4, (staff, "recovered"))  # a staff step: not an email
    mailed = await _checkout(store, 5, (email, "no_consent"), (email, "recovered"))
    await _checkout(store, 6, (email, "condition_failed_elsewhere"))  # another word, no details
    erased = await _checkout(store, 7, (email, "no_consent"))
    assert await store.erase(erased, START + timedelta(days=1))

    assert await _ids(store, "condition_failed") == [bare, details]
    assert await _ids(store, "no_consent") == [mailed, consent]
    assert await _ids(store, "recovered") == [mailed]
    assert await _ids(store, "smtp_rejected") == []
    # With the query's own filters too.
    later = {"createdDate": {"$gte": (START + timedelta(hours=4)).isoformat()}}
    assert await _ids(store, "no_consent", filter=later) == [mailed]


async def test_cursor_pages_keep_to_the_reason(store: SqlStore):
    email = ActivityType.EMAIL_NOT_SENT
    first = await _checkout(store, 1, (email, "holdout"))
    await _checkout(store, 2, (email, "no_consent"))
    second = await _checkout(store, 3, (email, "holdout"))

    async def page(cursor: str | None) -> CheckoutPage:
        paging = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        body = (
            {"cursorPaging": paging} if cursor else {"sort": NEWEST_FIRST, "cursorPaging": paging}
        )
        return await store.query(parse_query({"query": body}), not_sent="holdout")

    one = await page(None)
    assert [c.id for c in one.checkouts] == [second] and one.cursors.next
    two = await page(one.cursors.next)
    assert [c.id for c in two.checkouts] == [first] and not two.cursors.next


async def test_the_reason_is_found_by_its_index(store: SqlStore):
    await _checkout(store, 1, (ActivityType.EMAIL_NOT_SENT, "no_consent"))
    query = parse_query({"query": {"sort": NEWEST_FIRST, "cursorPaging": {"limit": 25}}})
    plan = await _plan(store, page_statement(query, not_sent="condition_failed"))
    assert "ix_activities_type_reason" in plan, plan
