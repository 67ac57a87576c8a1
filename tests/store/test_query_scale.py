"""What keeps a query page cheap at scale, on each database: the capped total, the page's JSON
built straight from the rows (the same as the models'), orderId and nullable fields sorted by
their indexes, $startsWith as a bytewise range, and the plans the query patterns get."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Select, update

import store.checkout_query
from domain.activity import ActivityEntry, ActivityType
from domain.checkout import CheckoutStatus
from domain.query import CheckoutPage, parse_query
from store.checkout_query import count_statement, page_statement
from store.schema import checkouts
from store.sql import SqlStore
from tests.support import sample_checkout

START = datetime(2026, 11, 1, tzinfo=UTC)


async def _report(store: SqlStore, index: int, **fields: Any) -> str:
    checkout = sample_checkout(**fields).model_copy(
        update={"id": f"c{index:02d}", "created_date": START + timedelta(hours=index)}
    )
    await store.save_reported(checkout, START + timedelta(hours=index))
    return f"c{index:02d}"


async def _run(store: SqlStore, query: dict[str, Any]) -> CheckoutPage:
    return await store.query(parse_query({"query": query}))


def _ids(page: CheckoutPage) -> list[str]:
    return [c.id or "" for c in page.checkouts]


# --- total -------------------------------------------------------------------------------------


@pytest.fixture
async def eight(store: SqlStore) -> SqlStore:
    for index in range(8):
        await _report(store, index)
    return store


async def test_a_total_is_counted_up_to_the_cap(eight: SqlStore, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(store.checkout_query, "MAX_COUNTED", 8)
    page = await _run(eight, {"paging": {"limit": 3}})
    assert (page.total, page.too_many_to_count) == (8, False)
    assert page.to_json_dict()["metadata"] == {"count": 3, "offset": 0, "total": 8, "cursors": {}}


async def test_beyond_the_cap_the_page_says_too_many_to_count(
    eight: SqlStore, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(store.checkout_query, "MAX_COUNTED", 5)
    first = await _run(eight, {"paging": {"limit": 3}})
    assert (first.count, first.total, first.too_many_to_count) == (3, None, True)
    assert first.to_json_dict()["metadata"] == {
        "count": 3,
        "offset": 0,
        "tooManyToCount": True,
        "cursors": {},
    }
    # Past the cap by the page itself: no COUNT needed to know.
    later = await _run(eight, {"paging": {"limit": 3, "offset": 3}})
    assert (later.count, later.total, later.too_many_to_count) == (3, None, True)
    # A short page is the last one: its total is exact, cap or not.
    last = await _run(eight, {"paging": {"limit": 3, "offset": 6}})
    assert (last.count, last.total, last.too_many_to_count) == (2, 8, False)
    # A filter under the cap is counted.
    few = await _run(eight, {"filter": {"id": {"$lt": "c04"}}, "paging": {"limit": 2}})
    assert (few.total, few.too_many_to_count) == (4, False)


async def test_the_count_stops_after_the_cap(store: SqlStore):
    statement = count_statement(parse_query({}))
    compiled = str(statement.compile(dialect=store.engine.dialect))
    assert "LIMIT" in compiled.upper()


# --- the page's JSON ---------------------------------------------------------------------------


async def test_the_page_json_is_what_the_models_show(store: SqlStore):
    plain = await _report(store, 1)
    cart_only = await _report(store, 2, checkoutId=None, cartId="cart-2")
    await _report(
        store,
        3,
        buyerInfo={"contactId": "k3", "memberId": "m3"},
        subtotalPrice={"amount": "80.00", "convertedAmount": "90.00"},
        conversionCurrency="USD",
        buyerTimeZone="Europe/Zurich",
        marketingConsent=True,
    )
    recovered = await _report(store, 4)
    at = START + timedelta(days=1, microseconds=120)
    await store.mark_recovered(recovered, at, "order-4")
    stopped = await _report(store, 5)
    await store.stop(stopped, START + timedelta(days=2))
    for step in range(1, 24):  # more than a page shows
        entry = ActivityEntry(
            type=ActivityType.EMAIL_NOT_SENT if step % 2 else ActivityType.EMAIL_SENT,
            created_date=START + timedelta(days=3, minutes=step),
            step=step,
            reason="unsubscribed" if step % 2 else None,
            consent="granted" if step == 2 else None,
        )
        await store.record_activity(plain, f"step-{step}", entry)
    page = await _run(store, {"sort": [{"fieldName": "id"}]})
    shown = page.to_json_dict()["abandonedCheckouts"]
    assert [c["id"] for c in shown] == ["c01", "c02", "c03", "c04", "c05"]
    assert shown == [c.to_json_dict() for c in page.checkouts]
    for entry in shown:  # and what a read of each shows, with its newest 20 entries
        stored = await store.get(entry["id"])
        assert stored is not None
        newest = stored.model_copy(update={"activities": stored.activities[-20:]})
        assert entry == newest.to_json_dict()
    assert len(shown[0]["activities"]) == 20 and shown[0]["activities"][-1]["step"] == 23
    assert shown[1]["cartId"] == cart_only.replace("c0", "cart-")
    assert shown[3]["checkoutRecoveredDate"] == "2026-11-02T00:00:00.000120Z"
    assert shown[3]["status"] == CheckoutStatus.RECOVERED and shown[3]["orderId"] == "order-4"
    assert shown[4]["stopReason"]


# --- sorting by orderId and by nullable fields ---------------------------------------------------


@pytest.fixture
async def ordered(store: SqlStore) -> SqlStore:
    """Six checkouts; c01, c03, c05 recovered with orders o3, o1, o2 (c05 and c03 at the same
    moment), the others without an order."""
    for index in range(6):
        await _report(store, index)
    for index, order, day in ((1, "o3", 2), (3, "o1", 1), (5, "o2", 1)):
        await store.mark_recovered(f"c{index:02d}", START + timedelta(days=day), order)
    return store


async def _walk(store: SqlStore, query: dict[str, Any], limit: int = 2) -> list[str]:
    page = await _run(store, {**query, "cursorPaging": {"limit": limit}})
    seen = _ids(page)
    while page.cursors.next:
        page = await _run(store, {"cursorPaging": {"limit": limit, "cursor": page.cursors.next}})
        seen += _ids(page)
    back = page
    behind: list[str] = []
    while back.cursors.prev:
        back = await _run(store, {"cursorPaging": {"limit": limit, "cursor": back.cursors.prev}})
        behind = _ids(back) + behind
    assert behind + _ids(page) == seen  # the walk back shows the same order
    return seen


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"sort": [{"fieldName": "orderId"}]}, ["c00", "c02", "c04", "c03", "c05", "c01"]),
        (
            {"sort": [{"fieldName": "orderId", "order": "DESC"}]},
            ["c01", "c05", "c03", "c04", "c02", "c00"],
        ),
        (
            {"filter": {"orderId": {"$exists": True}}, "sort": [{"fieldName": "orderId"}]},
            ["c03", "c05", "c01"],
        ),
        (
            {
                "filter": {
                    "status": "RECOVERED",
                    "checkoutRecoveredDate": {"$gte": "2026-11-01T00:00:00Z"},
                },
                "sort": [{"fieldName": "checkoutRecoveredDate", "order": "DESC"}],
            },
            ["c01", "c05", "c03"],
        ),
        (
            {
                "filter": {"$or": [{"orderId": "o1"}, {"orderId": {"$exists": False}}]},
                "sort": [{"fieldName": "orderId", "order": "DESC"}],
            },
            ["c03", "c04", "c02", "c00"],
        ),
    ],
)
async def test_order_id_and_nullable_fields_sort_alike_by_page_and_by_cursor(
    ordered: SqlStore, query: dict[str, Any], expected: list[str]
):
    page = await _run(ordered, {**query, "paging": {"limit": 100}})
    assert _ids(page) == expected
    assert await _walk(ordered, query) == expected


# --- $startsWith --------------------------------------------------------------------------------

EMAILS = ["zoe@x.ch", "zoé@x.ch", "zof@x.ch", "zo@x.ch", "Zoe@x.ch", "zoz\uffee@x.ch", "z@x.ch"]


@pytest.mark.parametrize(
    "prefix", ["zo", "zoe", "zoé", "z", "Z", "zoz\uffee", "zoz", "zo@", "é", "", "zp", "%", "z_"]
)
async def test_starts_with_is_a_case_sensitive_prefix_on_every_text(store: SqlStore, prefix: str):
    for index, email in enumerate(EMAILS):
        await _report(store, index, buyerInfo={"email": email, "visitorId": f"v{index}"})
    page = await _run(store, {"filter": {"buyerInfo.email": {"$startsWith": prefix}}})
    shown = {c.buyer_info.email for c in page.checkouts}
    assert shown == {e for e in EMAILS if e.startswith(prefix)}


async def test_starts_with_a_prefix_ending_in_the_last_code_point(store: SqlStore):
    ids = ["co\U0010ffff", "co\U0010ffffa", "co\U0010fffe", "cp", "cozz", "co"]
    for index, checkout_id in enumerate(ids):
        await _report(store, index, checkoutId=checkout_id)
    for prefix in ("co\U0010ffff", "co", "\U0010ffff", "cp", "c"):
        page = await _run(store, {"filter": {"checkoutId": {"$startsWith": prefix}}})
        assert {c.checkout_id for c in page.checkouts} == {i for i in ids if i.startswith(prefix)}


# --- plans ---------------------------------------------------------------------------------------


async def _plan(store: SqlStore, statement: Select[Any], *, ordered: bool = False) -> str:
    """The database's plan for `statement` (PostgreSQL told to avoid what only small tables
    make cheap: sequential scans, bitmap scans, and with `ordered` sorting)."""
    async with store.engine.connect() as conn:
        compiled = statement.compile(dialect=conn.dialect)
        values = compiled.construct_params()
        params = tuple(values[name] for name in compiled.positiontup or ())
        if conn.dialect.name == "sqlite":
            params = tuple(
                v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v
                for v in params
            )
            rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled.string}", params)
            return "\n".join(str(row[-1]) for row in rows)
        await conn.exec_driver_sql("SET enable_seqscan = off")
        await conn.exec_driver_sql("SET enable_bitmapscan = off")
        if ordered:
            await conn.exec_driver_sql("SET enable_sort = off")
        rows = await conn.exec_driver_sql(f"EXPLAIN {compiled.string}", params)
        return "\n".join(str(row[0]) for row in rows)


PLANS = [
    (
        {
            "filter": {
                "status": "ABANDONED",
                "createdDate": {"$gte": "2026-11-01T00:00:00Z", "$lt": "2026-12-01T00:00:00Z"},
            },
            "sort": [{"fieldName": "createdDate", "order": "DESC"}],
        },
        "ix_checkouts_status_created_date_id",
    ),
    ({"filter": {"createdDate": {"$gte": "2026-11-01T00:00:00Z"}}}, "ix_checkouts_created_date_id"),
    ({}, "ix_checkouts_created_date_id"),
    (
        {
            "filter": {
                "status": "RECOVERED",
                "checkoutRecoveredDate": {"$gte": "2026-11-01T00:00:00Z"},
            },
            "sort": [{"fieldName": "checkoutRecoveredDate", "order": "DESC"}],
        },
        "ix_checkouts_status_recovered_date_id",
    ),
    (
        {"filter": {"orderId": {"$exists": True}}, "sort": [{"fieldName": "orderId"}]},
        "ix_checkouts_order_id_id",
    ),
    ({"filter": {"buyerInfo.email": "ada@example.com"}}, "ix_checkouts_buyer_email"),
    ({"filter": {"buyerInfo.email": {"$startsWith": "ada"}}}, "ix_checkouts_buyer_email"),
    ({"filter": {"buyerInfo.contactId": "k1"}}, "ix_checkouts_buyer_contact_id"),
    ({"filter": {"checkoutId": "co-1"}}, "ix_checkouts_checkout_id"),
    ({"filter": {"cartId": "cart-1"}}, "ix_checkouts_cart_id"),
]


@pytest.mark.parametrize(("query", "index"), PLANS)
async def test_each_query_pattern_is_served_by_its_index(
    store: SqlStore, query: dict[str, Any], index: str
):
    await _report(store, 1)
    ordered = "sort" in query or not query.get("filter")  # a range in the sort's order
    plan = await _plan(store, page_statement(parse_query({"query": query})), ordered=ordered)
    assert index in plan, plan
    if ordered:  # no sort step
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


async def test_a_cursor_page_is_a_range_of_the_index(store: SqlStore):
    for index in range(3):
        await _report(store, index)
    first = await _run(store, {"filter": {"status": "ABANDONED"}, "cursorPaging": {"limit": 1}})
    assert first.cursors.next
    query = parse_query({"query": {"cursorPaging": {"limit": 1, "cursor": first.cursors.next}}})
    plan = await _plan(store, page_statement(query), ordered=True)
    assert "ix_checkouts_status_created_date_id" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


async def test_a_page_of_erased_checkouts_is_empty(store: SqlStore):
    await _report(store, 1)
    async with store.engine.begin() as conn:
        await conn.execute(update(checkouts).values(deleted_date=START))
    page = await _run(store, {"paging": {"limit": 5}})
    assert (page.count, page.total, page.too_many_to_count) == (0, 0, False)
