"""The checkout list's filters, without a browser: the query bodies they send to the query API
(domain.query accepts each one), their links, and the messages bad input gets."""

from typing import Any

import pytest

from api.dashboard.filters import PAGE_SIZE, ListFilters
from domain.query import parse_query


def _conditions(filters: ListFilters) -> list[dict[str, Any]]:
    body = filters.query_body(None)
    parse_query(body)  # the query API takes it as it is
    found: list[dict[str, Any]] = body["query"]["filter"].get("$and", [])
    return found


def test_no_filter_lists_everything_newest_first() -> None:
    body = ListFilters().query_body(None)
    assert body == {
        "query": {
            "filter": {},
            "sort": [{"fieldName": "createdDate", "order": "DESC"}],
            "cursorPaging": {"limit": PAGE_SIZE},
        }
    }


def test_each_field_becomes_its_condition() -> None:
    filters = ListFilters.given(
        status="ABANDONED",
        email=" ada@ ",
        checkout_id="co-1",
        cart_id="cart-1",
        reason="cancelled",
        since="2026-11-01",
        until="2026-11-30",
    )
    assert filters.problems() == []
    assert _conditions(filters) == [
        {"status": {"$eq": "ABANDONED"}},
        {"buyerInfo.email": {"$startsWith": "ada@"}},
        {"checkoutId": {"$eq": "co-1"}},
        {"cartId": {"$eq": "cart-1"}},
        {"stopReason": {"$eq": "cancelled"}},
        {"createdDate": {"$gte": "2026-11-01T00:00:00+00:00"}},
        # The until day is included: the range ends where the following day starts.
        {"createdDate": {"$lt": "2026-12-01T00:00:00+00:00"}},
    ]


def test_a_cursor_carries_its_filters_and_the_link_keeps_them_too() -> None:
    filters = ListFilters.given(status="RECOVERED", cart_id="cart 1")
    assert filters.query_body("abc") == {
        "query": {"cursorPaging": {"limit": PAGE_SIZE, "cursor": "abc"}}
    }
    assert filters.link("abc") == "/dashboard/checkouts?status=RECOVERED&cartId=cart+1&cursor=abc"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"status": "LOST"}, "status must be one of ABANDONED, RECOVERED"),
        ({"reason": "bored"}, "reason must be one of cancelled, buyer_purchased, window_elapsed"),
        ({"since": "31/01/2026"}, "since: '31/01/2026' is not a date such as 2025-01-31"),
        ({"until": "tomorrow"}, "until: 'tomorrow' is not a date such as 2025-01-31"),
        ({"since": "2026-11-02", "until": "2026-11-01"}, "until: must not be before since"),
        ({"email": "a" * 201}, "email: at most 200 characters"),
        ({"checkout_id": "c" * 201}, "checkout id: at most 200 characters"),
    ],
)
def test_bad_input_gets_a_clear_message(fields: dict[str, str], problem: str) -> None:
    assert ListFilters.given(**fields).problems() == [problem]


def test_not_sent_because_goes_beside_the_query_and_stays_in_the_link() -> None:
    filters = ListFilters.given(not_sent=" condition_failed ", status="ABANDONED")
    assert filters.problems() == []
    # Not a field of the query language: the store takes it beside the query, on every page.
    assert _conditions(filters) == [{"status": {"$eq": "ABANDONED"}}]
    assert filters.store_not_sent == "condition_failed"
    assert ListFilters().store_not_sent is None
    assert filters.link("abc") == (
        "/dashboard/checkouts?status=ABANDONED&notSent=condition_failed&cursor=abc"
    )
    (problem,) = ListFilters.given(not_sent="bored").problems()
    assert problem.startswith("not sent because: must be one of recovered, cancelled,")
