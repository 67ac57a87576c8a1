"""Queries on the store, on each database: every operator against a model of the seeded rows,
logic, sorting with ties, both kinds of paging, erased rows, and the newest-20 activities."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from domain.activity import ActivityEntry, ActivityType
from domain.query import CheckoutPage, parse_query
from store.schema import checkouts
from store.sql import SqlStore
from tests.support import sample_checkout

START = datetime(2026, 11, 1, tzinfo=UTC)
SEEDED = 30
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Where a missing date sorts: before every real one, as documented in store.checkout_query."""


@dataclass(frozen=True)
class Seeded:
    """What the test put in the store, in the terms of the query's fields."""

    values: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.values["id"])

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def _buyer(index: int) -> dict[str, str]:
    buyer = {("visitorId", "memberId", "userId")[index % 3]: f"{'vmu'[index % 3]}{index:02d}"}
    if index % 4:
        buyer["email"] = f"{('ada', 'bob', 'cy')[index % 3]}{index:02d}@example.com"
    if index % 2 == 0:
        buyer["contactId"] = f"k{index:02d}"
    return buyer


def _model(index: int) -> dict[str, Any]:
    """Checkout `index` as seeded: created dates repeat every ten (c00, c10 and c20 share one),
    every fourth has no email, every fifth has a cart instead of a checkout id, and those with
    index % 4 == 1 are recovered at one of three moments (so recovered dates tie too)."""
    buyer = _buyer(index)
    created = START + timedelta(hours=index % 10)
    recovered = START + timedelta(days=1, hours=index % 3) if index % 4 == 1 else None
    return {
        "id": f"c{index:02d}",
        "checkoutId": None if index % 5 == 0 else f"co{index:02d}",
        "cartId": f"cart{index:02d}" if index % 5 == 0 else None,
        "status": "RECOVERED" if recovered else "ABANDONED",
        "createdDate": created,
        "updatedDate": recovered or created + timedelta(minutes=index),
        "checkoutRecoveredDate": recovered,
        "orderId": f"o{index:02d}" if recovered else None,
        **{f"buyerInfo.{key}": buyer.get(key) for key in ("email", "contactId")},
        **{f"buyerInfo.{key}": buyer.get(key) for key in ("visitorId", "memberId", "userId")},
    }


MODEL = [Seeded(_model(index)) for index in range(SEEDED)]
BUSY = "c03"
"""The checkout given more activity entries than a query shows."""


async def _seed_one(store: SqlStore, index: int) -> None:
    values = _model(index)
    report: dict[str, Any] = {"buyerInfo": _buyer(index), "checkoutId": values["checkoutId"]}
    if values["cartId"]:
        report["cartId"] = values["cartId"]
    checkout = sample_checkout(**report).model_copy(
        update={"id": values["id"], "created_date": values["createdDate"]}
    )
    await store.save_reported(checkout, values["updatedDate"] if index % 4 != 1 else START)
    if values["checkoutRecoveredDate"]:
        await store.mark_recovered(values["id"], values["checkoutRecoveredDate"], values["orderId"])


@pytest.fixture
async def seeded(store: SqlStore) -> SqlStore:
    """The modelled checkouts, one erased checkout beyond them, and 25 more entries for BUSY."""
    await asyncio.gather(*(_seed_one(store, index) for index in range(SEEDED + 1)))
    async with store.engine.begin() as conn:
        erased = update(checkouts).where(checkouts.c.id == f"c{SEEDED:02d}")
        await conn.execute(erased.values(deleted_date=START + timedelta(days=2)))
    for step in range(1, 26):
        sent = START + timedelta(days=3, hours=step)
        entry = ActivityEntry(type=ActivityType.EMAIL_SENT, created_date=sent, step=step)
        await store.record_activity(BUSY, f"step-{step}", entry)
    return store


async def _run(store: SqlStore, query: dict[str, Any]) -> CheckoutPage:
    return await store.query(parse_query({"query": query}))


def _ids(page: CheckoutPage) -> list[str]:
    return [c.id or "" for c in page.checkouts]


def _where(predicate: Callable[[Seeded], bool]) -> list[str]:
    return sorted(row.id for row in MODEL if predicate(row))


def _at(hours: int) -> str:
    return (START + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


# --- filters -----------------------------------------------------------------------------------

OPERATOR_CASES: list[tuple[dict[str, Any], Callable[[Seeded], bool]]] = [
    ({"id": "c07"}, lambda r: r.id == "c07"),
    ({"status": {"$eq": "RECOVERED"}}, lambda r: r["status"] == "RECOVERED"),
    ({"status": {"$ne": "RECOVERED"}}, lambda r: r["status"] != "RECOVERED"),
    (
        {"buyerInfo.email": {"$ne": "bob01@example.com"}},
        lambda r: r["buyerInfo.email"] != "bob01@example.com",  # rows without email included
    ),
    ({"buyerInfo.email": {"$exists": True}}, lambda r: r["buyerInfo.email"] is not None),
    ({"checkoutRecoveredDate": {"$exists": False}}, lambda r: r["checkoutRecoveredDate"] is None),
    ({"cartId": {"$exists": True}}, lambda r: r["cartId"] is not None),
    (
        {"buyerInfo.visitorId": {"$in": ["v03", "v06", "nobody", "m04"]}},
        lambda r: r["buyerInfo.visitorId"] in ("v03", "v06"),
    ),
    (
        {"status": {"$hasSome": ["ABANDONED"]}},
        lambda r: r["status"] == "ABANDONED",
    ),
    (
        {"buyerInfo.memberId": {"$hasSome": ["m01", "m04"]}},
        lambda r: r["buyerInfo.memberId"] in ("m01", "m04"),
    ),
    (
        {"buyerInfo.email": {"$startsWith": "ada"}},
        lambda r: (r["buyerInfo.email"] or "").startswith("ada"),
    ),
    ({"buyerInfo.email": {"$startsWith": "ADA"}}, lambda r: False),  # case-sensitive everywhere
    ({"checkoutId": {"$startsWith": "co1"}}, lambda r: (r["checkoutId"] or "").startswith("co1")),
    ({"buyerInfo.email": {"$startsWith": "%"}}, lambda r: False),  # LIKE wildcards are escaped
    ({"buyerInfo.userId": {"$startsWith": "u_"}}, lambda r: False),
    ({"createdDate": {"$gt": _at(7)}}, lambda r: r["createdDate"] > START + timedelta(hours=7)),
    ({"createdDate": {"$gte": _at(7)}}, lambda r: r["createdDate"] >= START + timedelta(hours=7)),
    ({"createdDate": {"$lt": _at(2)}}, lambda r: r["createdDate"] < START + timedelta(hours=2)),
    (
        {"createdDate": {"$lte": "2026-11-01T03:00:00+01:00"}},  # 02:00 UTC
        lambda r: r["createdDate"] <= START + timedelta(hours=2),
    ),
    (
        {"updatedDate": {"$gte": _at(24)}},
        lambda r: r["updatedDate"] >= START + timedelta(hours=24),
    ),
    (
        {"checkoutRecoveredDate": {"$gt": _at(24)}},
        lambda r: (
            r["checkoutRecoveredDate"] is not None
            and r["checkoutRecoveredDate"] > START + timedelta(hours=24)
        ),
    ),
    ({"buyerInfo.contactId": {"$lt": "k10"}}, lambda r: (r["buyerInfo.contactId"] or "~") < "k10"),
    ({"orderId": "o05"}, lambda r: r["orderId"] == "o05"),
    (
        {"createdDate": {"$gte": _at(2), "$lt": _at(4)}},
        lambda r: START + timedelta(hours=2) <= r["createdDate"] < START + timedelta(hours=4),
    ),
    (
        {"status": "ABANDONED", "buyerInfo.email": {"$startsWith": "bob"}},
        lambda r: r["status"] == "ABANDONED" and (r["buyerInfo.email"] or "").startswith("bob"),
    ),
]


async def test_each_operator_returns_exactly_the_matching_checkouts(seeded: SqlStore):
    # One seeded store for every case: seeding costs more than all the queries together.
    for query_filter, predicate in OPERATOR_CASES:
        page = await _run(seeded, {"filter": query_filter, "paging": {"limit": 100}})
        expected = _where(predicate)
        assert sorted(_ids(page)) == expected, query_filter
        assert page.total == len(expected), query_filter


async def test_the_model_matches_what_the_store_shows(seeded: SqlStore):
    # The operator cases compare against MODEL; this keeps MODEL honest.
    page = await _run(seeded, {"paging": {"limit": 100}})
    shown = {c.id or "": c for c in page.checkouts}
    assert sorted(shown) == [row.id for row in MODEL]
    for row in MODEL:
        checkout = shown[row.id]
        assert (checkout.status, checkout.checkout_recovered_date) == (
            row["status"],
            row["checkoutRecoveredDate"],
        )
        assert (checkout.created_date, checkout.updated_date) == (
            row["createdDate"],
            row["updatedDate"],
        )
        assert checkout.buyer_info.email == row["buyerInfo.email"]
        assert (checkout.checkout_id, checkout.cart_id) == (row["checkoutId"], row["cartId"])


LOGIC_CASES: list[tuple[dict[str, Any], Callable[[Seeded], bool]]] = [
    (
        {"$and": [{"status": "ABANDONED"}, {"buyerInfo.email": {"$exists": False}}]},
        lambda r: r["status"] == "ABANDONED" and r["buyerInfo.email"] is None,
    ),
    (
        {"$or": [{"status": "RECOVERED"}, {"cartId": {"$exists": True}}]},
        lambda r: r["status"] == "RECOVERED" or r["cartId"] is not None,
    ),
    (
        # $not keeps the rows without an email: the complement of the filter, exactly.
        {"$not": {"buyerInfo.email": {"$startsWith": "ada"}}},
        lambda r: not (r["buyerInfo.email"] or "").startswith("ada"),
    ),
    ({"$not": {"buyerInfo.email": "cy02@example.com"}}, lambda r: r.id != "c02"),
    (
        {"$not": {"$or": [{"status": "RECOVERED"}, {"createdDate": {"$lt": _at(5)}}]}},
        lambda r: not (r["status"] == "RECOVERED" or r["createdDate"] < START + timedelta(hours=5)),
    ),
    (
        {
            "$or": [
                {"$and": [{"status": "RECOVERED"}, {"buyerInfo.userId": {"$exists": True}}]},
                {"id": {"$in": ["c00", "c01"]}},
            ],
            "createdDate": {"$lt": _at(9)},
        },
        lambda r: (
            (
                (r["status"] == "RECOVERED" and r["buyerInfo.userId"] is not None)
                or r.id in ("c00", "c01")
            )
            and r["createdDate"] < START + timedelta(hours=9)
        ),
    ),
    ({"$and": [{}, {"id": "c04"}]}, lambda r: r.id == "c04"),
]


async def test_and_or_not_combine_filters(seeded: SqlStore):
    for query_filter, predicate in LOGIC_CASES:
        page = await _run(seeded, {"filter": query_filter, "paging": {"limit": 100}})
        assert sorted(_ids(page)) == _where(predicate), query_filter


async def test_erased_checkouts_are_never_found(seeded: SqlStore):
    erased = f"c{SEEDED:02d}"
    assert await seeded.get(erased) is None
    for query in ({}, {"filter": {"id": erased}}, {"filter": {"$not": {"id": "c00"}}}):
        page = await _run(seeded, {**query, "paging": {"limit": 100}})
        assert erased not in _ids(page)
    page = await _run(seeded, {"filter": {"id": erased}})
    assert (page.checkouts, page.total) == ([], 0)


# --- sorting -----------------------------------------------------------------------------------


def _key(field: str) -> Callable[[Seeded], Any]:
    def key(row: Seeded) -> Any:
        value = row[field]
        if value is None:
            return EPOCH if field.endswith("Date") else ""
        return value

    return key


def _sorted(rows: list[Seeded], sort: list[tuple[str, bool]]) -> list[str]:
    """Rows in the order of `sort` (field, descending), then by id in the last key's direction."""
    ordered = sorted(rows, key=lambda r: r.id, reverse=sort[-1][1])
    for field, descending in reversed(sort):
        ordered = sorted(ordered, key=_key(field), reverse=descending)  # stable: keeps ties
    return [row.id for row in ordered]


SORTS: list[list[tuple[str, bool]]] = [
    [("createdDate", True)],
    [("createdDate", False)],
    [("updatedDate", True)],
    [("checkoutRecoveredDate", False)],
    [("checkoutRecoveredDate", True)],
    [("id", True)],
    [("checkoutId", False)],
    [("cartId", True)],
    [("buyerInfo.email", True)],
    [("buyerInfo.email", False)],
    [("status", False), ("checkoutRecoveredDate", True), ("createdDate", False)],
    [("status", True), ("createdDate", True)],
]


def _sort_body(sort: list[tuple[str, bool]]) -> list[dict[str, str]]:
    return [{"fieldName": f, "order": "DESC" if d else "ASC"} for f, d in sort]


async def test_sorting_asc_and_desc_with_ties_broken_by_id(seeded: SqlStore):
    for sort in SORTS:
        page = await _run(seeded, {"sort": _sort_body(sort), "paging": {"limit": 100}})
        assert _ids(page) == _sorted(MODEL, sort), sort
    default = await _run(seeded, {"paging": {"limit": 100}})
    assert _ids(default) == _sorted(MODEL, [("createdDate", True)])
    # Ties do occur, or the tie-breaker would go untested.
    assert _ids(default)[:3] == ["c29", "c19", "c09"]


# --- paging ------------------------------------------------------------------------------------


async def test_offset_paging_counts_and_totals(seeded: SqlStore):
    pages = [
        await _run(seeded, {"paging": {"limit": 7, "offset": offset}}) for offset in range(0, 35, 7)
    ]
    assert [p.count for p in pages] == [7, 7, 7, 7, 2]
    assert [p.offset for p in pages] == [0, 7, 14, 21, 28]
    assert {p.total for p in pages} == {SEEDED}
    walked = [i for p in pages for i in _ids(p)]
    assert walked == _sorted(MODEL, [("createdDate", True)])
    beyond = await _run(seeded, {"paging": {"offset": 100}})
    assert (beyond.count, beyond.total) == (0, SEEDED)
    filtered = await _run(seeded, {"filter": {"status": "RECOVERED"}, "paging": {"limit": 3}})
    assert (filtered.count, filtered.total) == (3, 8)
    metadata = filtered.to_json_dict()["metadata"]
    assert metadata == {"count": 3, "offset": 0, "total": 8, "cursors": {}}


async def _walk(
    store: SqlStore, query: dict[str, Any], limit: int
) -> tuple[list[CheckoutPage], list[CheckoutPage]]:
    """Every page forwards from the first by `next` cursors, then backwards by `prev` cursors
    from the last (in the order visited)."""
    forwards = [await _run(store, {**query, "cursorPaging": {"limit": limit}})]
    while forwards[-1].cursors.next is not None:
        cursor = forwards[-1].cursors.next
        forwards.append(await _run(store, {"cursorPaging": {"limit": limit, "cursor": cursor}}))
        assert len(forwards) <= SEEDED, "the walk does not end"
    backwards = [forwards[-1]]
    while backwards[-1].cursors.prev is not None:
        cursor = backwards[-1].cursors.prev
        backwards.append(await _run(store, {"cursorPaging": {"limit": limit, "cursor": cursor}}))
        assert len(backwards) <= SEEDED, "the walk back does not end"
    return forwards, backwards


CURSOR_WALKS: list[tuple[dict[str, Any], list[tuple[str, bool]], Callable[[Seeded], bool]]] = [
    ({}, [("createdDate", True)], lambda r: True),
    ({"status": "ABANDONED"}, [("createdDate", False)], lambda r: r["status"] == "ABANDONED"),
    ({}, [("checkoutRecoveredDate", False)], lambda r: True),  # nulls first, then ties
    ({}, [("checkoutRecoveredDate", True), ("createdDate", False)], lambda r: True),
    (
        {"buyerInfo.email": {"$ne": "ada03@example.com"}},
        [("buyerInfo.email", True)],
        lambda r: r["buyerInfo.email"] != "ada03@example.com",
    ),
    ({}, [("status", False), ("cartId", True)], lambda r: True),
]


@pytest.mark.parametrize("limit", [4, 7, 30])
async def test_cursor_pages_yield_every_match_once_in_order_both_ways(seeded: SqlStore, limit: int):
    for query_filter, sort, predicate in CURSOR_WALKS:
        query = {"filter": query_filter, "sort": _sort_body(sort)}
        forwards, backwards = await _walk(seeded, query, limit)
        expected = _sorted([r for r in MODEL if predicate(r)], sort)
        assert [i for p in forwards for i in _ids(p)] == expected, sort
        assert [p.count for p in forwards[:-1]] == [limit] * (len(forwards) - 1)
        # Backwards, the pages are the same ones, each still in the query's order.
        assert [_ids(p) for p in reversed(backwards)] == [_ids(p) for p in forwards], sort
        assert forwards[0].cursors.prev is None and forwards[-1].cursors.next is None
        assert all(p.total is None and p.offset is None for p in forwards)


async def test_a_cursor_page_reports_no_total_and_a_next_cursor(seeded: SqlStore):
    page = await _run(seeded, {"filter": {"status": "RECOVERED"}, "cursorPaging": {"limit": 5}})
    metadata = page.to_json_dict()["metadata"]
    assert metadata["count"] == 5 and "total" not in metadata and "offset" not in metadata
    assert set(metadata["cursors"]) == {"next"}
    # The cursor may come back with its own filter spelled out, and continues the same walk.
    cursor = metadata["cursors"]["next"]
    again = await _run(
        seeded,
        {
            "filter": {"status": {"$eq": "RECOVERED"}},
            "cursorPaging": {"limit": 5, "cursor": cursor},
        },
    )
    assert _ids(page) + _ids(again) == _sorted(
        [r for r in MODEL if r["status"] == "RECOVERED"], [("createdDate", True)]
    )


async def test_an_empty_result_has_no_cursors(seeded: SqlStore):
    page = await _run(seeded, {"filter": {"id": "none"}, "cursorPaging": {"limit": 5}})
    assert (page.checkouts, page.cursors.next, page.cursors.prev) == ([], None, None)


# --- what each checkout carries ----------------------------------------------------------------


async def test_a_query_shows_the_newest_20_activities_oldest_first(seeded: SqlStore):
    page = await _run(seeded, {"filter": {"id": {"$in": [BUSY, "c04"]}}})
    shown = {c.id: c for c in page.checkouts}
    busy = shown[BUSY].activities
    assert len(busy) == 20
    assert [a.step for a in busy] == list(range(6, 26))
    full = await seeded.get(BUSY)
    assert full is not None and len(full.activities) == 26  # the SCHEDULED entry and 25 sends
    assert [a.type for a in shown["c04"].activities] == [ActivityType.SCHEDULED]
