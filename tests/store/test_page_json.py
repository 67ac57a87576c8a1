"""The query page's JSON as the API sends it (store.checkout_query.page_json), on each database:
the same values as the models', the stored snapshot spliced in as it is, and the page's dates,
read without UtcDateTime's step, still aware UTC wherever a model or a cursor sees them."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.activity import ActivityEntry, ActivityType
from domain.query import CheckoutPage, Cursors, parse_query
from store.checkout_query import page_json
from store.rows import splice_object
from store.sql import SqlStore
from tests.support import sample_checkout

START = datetime(2026, 11, 1, tzinfo=UTC)


async def _report(store: SqlStore, index: int, **fields: Any) -> str:
    checkout = sample_checkout(**fields).model_copy(
        update={"id": f"c{index:02d}", "created_date": START + timedelta(hours=index)}
    )
    await store.save_reported(checkout, START + timedelta(hours=index, microseconds=index))
    return f"c{index:02d}"


async def _seed(store: SqlStore) -> None:
    plain = await _report(store, 1)
    await _report(
        store,
        2,
        checkoutId=None,
        cartId="cart-2",
        buyerInfo={"email": "zoë@example.com", "contactId": "k2", "memberId": "m2"},
        contactDetails={"firstName": 'Zoë "Z" \\ Ünal', "lastName": "李 \u2028 😀"},
    )
    recovered = await _report(store, 3)
    await store.mark_recovered(recovered, START + timedelta(days=1, microseconds=120), "order-3")
    stopped = await _report(store, 4)
    await store.stop(stopped, START + timedelta(days=2))
    for step in range(1, 23):
        entry = ActivityEntry(
            type=ActivityType.EMAIL_NOT_SENT if step % 2 else ActivityType.EMAIL_SENT,
            created_date=START + timedelta(days=3, minutes=step, microseconds=step % 3),
            step=step,
            reason="unsubscribed" if step % 2 else None,
            consent="granted" if step == 2 else None,
        )
        await store.record_activity(plain, f"step-{step}", entry)


async def test_the_page_bytes_hold_what_the_models_show(store: SqlStore):
    await _seed(store)
    for query in (
        {"sort": [{"fieldName": "id"}]},
        {"sort": [{"fieldName": "createdDate", "order": "DESC"}], "paging": {"limit": 2}},
        {"filter": {"status": "RECOVERED"}, "cursorPaging": {"limit": 1}},
    ):
        page = await store.query(parse_query({"query": query}))
        sent = page_json(page)
        assert json.loads(sent) == page.to_json_dict()
        # ... and what the models give, as the route sent it before (JSONResponse of their dicts)
        models = CheckoutPage(
            page.checkouts, page.offset, page.total, page.cursors, page.too_many_to_count
        )
        assert json.loads(sent) == json.loads(json.dumps(models.to_json_dict()))
        assert json.loads(page_json(models)) == models.to_json_dict()


async def test_the_page_shows_dates_as_pydantic_writes_them(store: SqlStore):
    await _seed(store)
    page = await store.query(parse_query({"query": {"sort": [{"fieldName": "id"}]}}))
    shown = json.loads(page_json(page))["abandonedCheckouts"]
    assert shown[0]["createdDate"] == "2026-11-01T01:00:00Z"
    assert shown[1]["updatedDate"] == "2026-11-01T02:00:00.000002Z"
    assert shown[2]["checkoutRecoveredDate"] == "2026-11-02T00:00:00.000120Z"
    assert shown[0]["activities"][-1]["createdDate"] == "2026-11-04T00:22:00.000001Z"
    assert shown[1]["contactDetails"]["lastName"] == "李 \u2028 😀"
    for checkout in page.checkouts:  # the models a page builds have aware UTC dates
        stored = await store.get(checkout.id or "")
        assert stored is not None
        assert checkout.created_date == stored.created_date
        assert checkout.updated_date == stored.updated_date
        assert checkout.checkout_recovered_date == stored.checkout_recovered_date
        assert checkout.activities == stored.activities[-20:]
        for moment in (checkout.created_date, checkout.updated_date):
            assert moment is not None and moment.utcoffset() == timedelta(0)


async def test_a_cursor_walk_by_date_continues_exactly(store: SqlStore):
    await _seed(store)
    for field in ("createdDate", "updatedDate", "checkoutRecoveredDate"):
        query: dict[str, Any] = {
            "sort": [{"fieldName": field, "order": "DESC"}],
            "cursorPaging": {"limit": 1},
        }
        seen: list[str] = []
        while True:
            page = await store.query(parse_query({"query": query}))
            seen += [c.id or "" for c in page.checkouts]
            if page.cursors.next is None:
                break
            query = {"cursorPaging": {"limit": 1, "cursor": page.cursors.next}}
        everything = await store.query(
            parse_query({"query": {"sort": [{"fieldName": field, "order": "DESC"}]}})
        )
        assert seen == [c.id for c in everything.checkouts], field


def test_splicing_keeps_both_objects_members():
    assert splice_object('{"a":1}', b'{"b":2}') == b'{"a":1,"b":2}'
    assert json.loads(splice_object(' { "a" : [1, {"x": "}"}] } ', b'{"b":2}')) == {
        "a": [1, {"x": "}"}],
        "b": 2,
    }
    assert splice_object("{}", b'{"b":2}') == b'{"b":2}'
    assert splice_object(" { } ", b'{"b":2}') == b'{"b":2}'


def test_an_empty_page():
    page = CheckoutPage([], offset=0, total=0, cursors=Cursors())
    assert json.loads(page_json(page)) == page.to_json_dict()
    assert (
        page_json(page)
        == b'{"abandonedCheckouts":[],"metadata":{"count":0,"offset":0,"total":0,"cursors":{}}}'
    )
