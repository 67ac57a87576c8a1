"""POST /query over real HTTP: every operator, logic, sorting, both paging kinds and the limits."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from domain.policy import parse_policy
from store.sql import SqlStore
from tests.api.stack import BASE, Stack, checkout_body, running_stack
from tests.support import SmtpServer

QUIET_POLICY = parse_policy(
    {"name": "quiet", "steps": [{"delay": "1h", "action": "email", "template": "reminder"}]},
    "test",
)
START = datetime(2026, 11, 1, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
async def seeded(
    dev_server_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, tmp_path: Path
) -> AsyncIterator[tuple[Stack, list[dict[str, Any]]]]:
    """Twelve checkouts: created a day apart (two share a moment), varied buyers, some recovered."""
    async with running_stack(
        dev_server_env.client, store, smtp, tmp_path, policy=QUIET_POLICY
    ) as stack:
        made = []
        for index in range(12):
            created = START + timedelta(days=min(index, 10))  # 10 and 11 share a date
            buyer: dict[str, Any] = {"visitorId": f"v-{index}"}
            if index % 3 != 0:
                buyer["email"] = f"{'ada' if index % 2 else 'bob'}{index}@example.com"
            body = checkout_body(createdDate=_iso(created), buyerInfo=buyer)
            response = await stack.report(body)
            assert response.status_code == 201, response.text
            made.append(response.json()["abandonedCheckout"])
        for index in (1, 4, 7):
            recovered = await stack.http.post(
                f"{BASE}/{made[index]['id']}/recover",
                json={"checkoutRecoveredDate": _iso(START + timedelta(days=20 + index))},
                headers=stack.as_manager(),
            )
            made[index] = recovered.json()["abandonedCheckout"]
        yield stack, made


async def _query(stack: Stack, query: dict[str, Any]) -> dict[str, Any]:
    response = await stack.http.post(
        f"{BASE}/query", json={"query": query}, headers=stack.as_reader()
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert isinstance(result, dict)
    return result


def _ids(result: dict[str, Any]) -> list[str]:
    return [c["id"] for c in result["abandonedCheckouts"]]


def _email(c: dict[str, Any]) -> str | None:
    value = c["buyerInfo"].get("email")
    return str(value) if value else None


CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("$eq", {"status": {"$eq": "RECOVERED"}}, lambda c: c["status"] == "RECOVERED"),
    ("bare value", {"status": "ABANDONED"}, lambda c: c["status"] == "ABANDONED"),
    (
        "$ne",
        {"buyerInfo.email": {"$ne": "ada1@example.com"}},
        lambda c: _email(c) != "ada1@example.com",
    ),
    ("$exists true", {"buyerInfo.email": {"$exists": True}}, lambda c: _email(c) is not None),
    (
        "$exists false",
        {"checkoutRecoveredDate": {"$exists": False}},
        lambda c: "checkoutRecoveredDate" not in c,
    ),
    (
        "$in",
        {"buyerInfo.visitorId": {"$in": ["v-2", "v-5", "nobody"]}},
        lambda c: c["buyerInfo"]["visitorId"] in ("v-2", "v-5"),
    ),
    (
        "$hasSome",
        {"buyerInfo.email": {"$hasSome": ["bob2@example.com"]}},
        lambda c: _email(c) == "bob2@example.com",
    ),
    (
        "$startsWith",
        {"buyerInfo.email": {"$startsWith": "ada"}},
        lambda c: (_email(c) or "").startswith("ada"),
    ),
    ("$startsWith is case-sensitive", {"buyerInfo.email": {"$startsWith": "ADA"}}, lambda c: False),
    (
        "$gt",
        {"createdDate": {"$gt": _iso(START + timedelta(days=8))}},
        lambda c: c["createdDate"] > _iso(START + timedelta(days=8)),
    ),
    (
        "$gte",
        {"createdDate": {"$gte": _iso(START + timedelta(days=8))}},
        lambda c: c["createdDate"] >= _iso(START + timedelta(days=8)),
    ),
    (
        "$lt",
        {"createdDate": {"$lt": "2026-11-03T00:00:00+00:00"}},
        lambda c: c["createdDate"] < _iso(START + timedelta(days=2)),
    ),
    (
        "$lte",
        {"createdDate": {"$lte": _iso(START + timedelta(days=2))}},
        lambda c: c["createdDate"] <= _iso(START + timedelta(days=2)),
    ),
    (
        "two operators on one field",
        {"createdDate": {"$gt": _iso(START), "$lt": _iso(START + timedelta(days=3))}},
        lambda c: _iso(START) < c["createdDate"] < _iso(START + timedelta(days=3)),
    ),
    (
        "$and",
        {"$and": [{"status": "ABANDONED"}, {"buyerInfo.email": {"$exists": True}}]},
        lambda c: c["status"] == "ABANDONED" and _email(c) is not None,
    ),
    (
        "$or",
        {"$or": [{"status": "RECOVERED"}, {"buyerInfo.visitorId": "v-0"}]},
        lambda c: c["status"] == "RECOVERED" or c["buyerInfo"]["visitorId"] == "v-0",
    ),
    (
        "$not",
        {"$not": {"buyerInfo.email": {"$startsWith": "ada"}}},
        lambda c: not (_email(c) or "").startswith("ada"),
    ),
    (
        "fields side by side are ANDed",
        {"status": "RECOVERED", "buyerInfo.email": {"$startsWith": "ada"}},
        lambda c: c["status"] == "RECOVERED" and (_email(c) or "").startswith("ada"),
    ),
]


async def test_each_operator_returns_exactly_the_matching_checkouts(seeded):
    # One seeded store for every case: seeding takes longer than all the queries together.
    stack, made = seeded
    for name, query_filter, expected in CASES:
        result = await _query(stack, {"filter": query_filter, "paging": {"limit": 100}})
        wanted = [c["id"] for c in made if expected(c)]
        assert sorted(_ids(result)) == sorted(wanted), name
        assert result["metadata"]["total"] == len(wanted), name


async def test_sorting_asc_desc_and_the_default(seeded):
    stack, made = seeded
    by_date_then_id = sorted(made, key=lambda c: (c["createdDate"], c["id"]))
    ascending = await _query(
        stack, {"sort": [{"fieldName": "createdDate", "order": "ASC"}], "paging": {"limit": 100}}
    )
    assert _ids(ascending) == [c["id"] for c in by_date_then_id]
    default = await _query(stack, {"paging": {"limit": 100}})
    assert _ids(default) == [c["id"] for c in reversed(by_date_then_id)]
    by_email = await _query(
        stack,
        {"sort": [{"fieldName": "buyerInfo.email", "order": "DESC"}], "paging": {"limit": 100}},
    )
    emails = [_email(c) or "" for c in by_email["abandonedCheckouts"]]
    assert emails == sorted(emails, reverse=True)


async def test_offset_paging_reports_count_offset_and_total(seeded):
    stack, made = seeded
    pages = [
        await _query(stack, {"paging": {"limit": 5, "offset": offset}}) for offset in (0, 5, 10)
    ]
    assert [p["metadata"]["count"] for p in pages] == [5, 5, 2]
    assert [p["metadata"]["offset"] for p in pages] == [0, 5, 10]
    assert {p["metadata"]["total"] for p in pages} == {12}
    assert sorted(i for p in pages for i in _ids(p)) == sorted(c["id"] for c in made)


async def test_cursor_paging_walks_every_row_once_both_ways(seeded):
    stack, made = seeded
    query = {
        "filter": {"status": "ABANDONED"},
        "sort": [
            {"fieldName": "checkoutRecoveredDate"},
            {"fieldName": "createdDate", "order": "ASC"},
        ],
    }
    first = await _query(stack, {**query, "cursorPaging": {"limit": 4}})
    pages, page = [first], first
    while "next" in page["metadata"]["cursors"]:
        page = await _query(
            stack, {"cursorPaging": {"limit": 4, "cursor": page["metadata"]["cursors"]["next"]}}
        )
        pages.append(page)
    walked = [i for p in pages for i in _ids(p)]
    expected = [
        c["id"]
        for c in sorted(
            (c for c in made if c["status"] == "ABANDONED"),
            key=lambda c: (c["createdDate"], c["id"]),
        )
    ]
    assert walked == expected
    assert "total" not in first["metadata"] and "prev" not in first["metadata"]["cursors"]
    # Back from the last page: the previous page is the one before it, in the same order.
    back = await _query(
        stack, {"cursorPaging": {"limit": 4, "cursor": pages[-1]["metadata"]["cursors"]["prev"]}}
    )
    assert _ids(back) == _ids(pages[-2])


BAD_QUERIES: list[tuple[dict[str, Any], str]] = [
    ({"paging": {"limit": 101}}, "query.paging.limit"),
    ({"paging": {"limit": 0}}, "query.paging.limit"),
    ({"paging": {"offset": -1}}, "query.paging.offset"),
    ({"cursorPaging": {"limit": 101}}, "query.cursorPaging.limit"),
    ({"filter": {"buyerInfo.phone": "1"}}, "query.filter.buyerInfo.phone"),
    ({"filter": {"status": {"$like": "A%"}}}, "query.filter.status.$like"),
    ({"filter": {"status": {"$eq": "LOST"}}}, "query.filter.status.$eq"),
    ({"filter": {"createdDate": {"$gt": "yesterday"}}}, "query.filter.createdDate.$gt"),
    ({"filter": {"$and": [{"nope": 1}]}}, "query.filter.$and[0].nope"),
    ({"sort": [{"fieldName": "colour"}]}, "query.sort[0].fieldName"),
    ({"cursorPaging": {"cursor": "garbage!"}}, "query.cursorPaging.cursor"),
    ({"paging": {}, "cursorPaging": {}}, "query"),
]


async def test_a_bad_query_is_a_400_naming_the_field(seeded):
    stack, _ = seeded
    for query, field in BAD_QUERIES:
        response = await stack.http.post(
            f"{BASE}/query", json={"query": query}, headers=stack.as_reader()
        )
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_input"
        assert field in [d["field"] for d in response.json()["details"]], (query, field)


async def test_deleted_checkouts_are_not_found_by_queries(seeded):
    stack, made = seeded
    await stack.http.delete(f"{BASE}/{made[0]['id']}", headers=stack.as_manager())
    result = await _query(stack, {"paging": {"limit": 100}})
    assert made[0]["id"] not in _ids(result) and result["metadata"]["total"] == 11
