"""Checking query bodies: what each operator becomes, and that every problem names its path."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from domain.errors import InvalidInputError
from domain.query import (
    DEFAULT_LIMIT,
    FIELDS,
    SORTABLE,
    Boundary,
    CheckoutPage,
    CheckoutQuery,
    Condition,
    Cursors,
    Direction,
    Logic,
    Logical,
    Operator,
    SortKey,
    make_cursor,
    parse_query,
)
from tests.support import sample_checkout

NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _filter_of(query_filter: dict[str, Any]) -> Any:
    return parse_query({"query": {"filter": query_filter}}).filter


def _problems(body: object) -> list[str]:
    with pytest.raises(InvalidInputError) as caught:
        parse_query(body)
    return caught.value.problems


def _paths(body: object) -> list[str]:
    return [p.partition(": ")[0] for p in _problems(body)]


@pytest.mark.parametrize(
    ("query_filter", "expected"),
    [
        ({"status": "RECOVERED"}, Condition("status", Operator.EQ, "RECOVERED")),
        ({"id": {"$eq": "c1"}}, Condition("id", Operator.EQ, "c1")),
        ({"cartId": {"$ne": ""}}, Condition("cartId", Operator.NE, "")),
        ({"orderId": {"$exists": False}}, Condition("orderId", Operator.EXISTS, False)),
        (
            {"buyerInfo.visitorId": {"$in": ["v1", "v2"]}},
            Condition("buyerInfo.visitorId", Operator.IN, ("v1", "v2")),
        ),
        (
            {"buyerInfo.memberId": {"$hasSome": ["m1"]}},
            Condition("buyerInfo.memberId", Operator.HAS_SOME, ("m1",)),
        ),
        (
            {"buyerInfo.email": {"$startsWith": "ada"}},
            Condition("buyerInfo.email", Operator.STARTS_WITH, "ada"),
        ),
        (
            {"createdDate": {"$gt": "2026-11-22T12:00:00Z"}},
            Condition("createdDate", Operator.GT, NOON),
        ),
        (
            {"updatedDate": {"$gte": "2026-11-22T13:00:00+01:00"}},
            Condition("updatedDate", Operator.GTE, NOON),
        ),
        (
            {"checkoutRecoveredDate": {"$lt": "2026-11-22T12:00:00.000Z"}},
            Condition("checkoutRecoveredDate", Operator.LT, NOON),
        ),
        ({"checkoutId": {"$lte": "m"}}, Condition("checkoutId", Operator.LTE, "m")),
        (
            {"buyerInfo.contactId": "k", "buyerInfo.userId": {"$exists": True}},
            Logical(
                Logic.AND,
                (
                    Condition("buyerInfo.contactId", Operator.EQ, "k"),
                    Condition("buyerInfo.userId", Operator.EXISTS, True),
                ),
            ),
        ),
        (
            {"$or": [{"status": "ABANDONED"}, {"$not": {"orderId": "o"}}]},
            Logical(
                Logic.OR,
                (
                    Condition("status", Operator.EQ, "ABANDONED"),
                    Logical(Logic.NOT, (Condition("orderId", Operator.EQ, "o"),)),
                ),
            ),
        ),
        (
            {"$and": [{"id": "a"}, {"id": "b"}]},
            Logical(
                Logic.AND, (Condition("id", Operator.EQ, "a"), Condition("id", Operator.EQ, "b"))
            ),
        ),
    ],
)
def test_each_operator_is_accepted(query_filter: dict[str, Any], expected: Any):
    assert _filter_of(query_filter) == expected


def test_dates_become_aware_datetimes_at_the_same_instant():
    parsed = _filter_of({"createdDate": {"$gte": "2026-11-22T14:00:00+02:00"}})
    assert isinstance(parsed, Condition) and isinstance(parsed.value, datetime)
    assert parsed.value == NOON
    assert parsed.value.utcoffset() == timedelta(hours=2)


def test_an_empty_body_is_the_default_query():
    bodies: list[dict[str, Any]] = [{}, {"query": {}}]
    for body in bodies:
        query = parse_query(body)
        assert query == CheckoutQuery(
            filter=None,
            sort=(SortKey("createdDate", descending=True), SortKey("id", descending=True)),
            limit=DEFAULT_LIMIT,
        )


def test_id_breaks_ties_in_the_last_keys_direction_unless_sorted_on_already():
    asc = parse_query({"query": {"sort": [{"fieldName": "buyerInfo.email"}]}})
    assert asc.sort == (SortKey("buyerInfo.email", False), SortKey("id", False))
    mixed = parse_query(
        {
            "query": {
                "sort": [
                    {"fieldName": "status", "order": "ASC"},
                    {"fieldName": "checkoutRecoveredDate", "order": "DESC"},
                ]
            }
        }
    )
    assert [k.field for k in mixed.sort] == ["status", "checkoutRecoveredDate", "id"]
    assert mixed.sort[-1].descending
    by_id = parse_query({"query": {"sort": [{"fieldName": "id", "order": "DESC"}]}})
    assert by_id.sort == (SortKey("id", True),)


def test_every_filterable_field_is_sortable_orderid_too():
    # But stopReason, a filter only (the dashboard's reason filter): no index serves its sort.
    assert tuple(name for name in FIELDS if name != "stopReason") == SORTABLE
    by_order = parse_query({"query": {"sort": [{"fieldName": "orderId", "order": "DESC"}]}})
    assert by_order.sort == (SortKey("orderId", True), SortKey("id", True))


def test_paging_values_are_kept():
    offset = parse_query({"query": {"paging": {"limit": 100, "offset": 30}}})
    assert (offset.limit, offset.offset, offset.cursor_paging) == (100, 30, False)
    cursor = parse_query({"query": {"cursorPaging": {"limit": 1, "cursor": None}}})
    assert (cursor.limit, cursor.cursor_paging, cursor.boundary) == (1, True, None)


@pytest.mark.parametrize(
    ("query", "path", "message"),
    [
        ({"filter": {"buyerInfo.phone": "1"}}, "query.filter.buyerInfo.phone", "unknown field"),
        ({"filter": {"buyerInfo": {"email": "a"}}}, "query.filter.buyerInfo", "unknown field"),
        ({"filter": {"status": {"$like": "A%"}}}, "query.filter.status.$like", "unknown operator"),
        ({"filter": {"$nor": []}}, "query.filter.$nor", "unknown logical operator"),
        ({"filter": {"status": {}}}, "query.filter.status", "needs an operator"),
        ({"filter": {"status": "LOST"}}, "query.filter.status.$eq", "ABANDONED, RECOVERED"),
        ({"filter": {"status": {"$gt": "A"}}}, "query.filter.status.$gt", "not for this field"),
        ({"filter": {"id": 7}}, "query.filter.id.$eq", "must be a string"),
        ({"filter": {"id": None}}, "query.filter.id.$eq", "use $exists"),
        ({"filter": {"id": {"$exists": "yes"}}}, "query.filter.id.$exists", "true or false"),
        ({"filter": {"id": {"$in": "a"}}}, "query.filter.id.$in", "list of 1 to 100"),
        ({"filter": {"id": {"$hasSome": []}}}, "query.filter.id.$hasSome", "list of 1 to 100"),
        ({"filter": {"id": {"$in": ["a", 2]}}}, "query.filter.id.$in[1]", "must be a string"),
        ({"filter": {"id": "x" * 65}}, "query.filter.id.$eq", "at most 64 characters"),
        (
            {"filter": {"createdDate": {"$startsWith": "2026"}}},
            "query.filter.createdDate.$startsWith",
            "only for text fields",
        ),
        (
            {"filter": {"createdDate": {"$gt": "yesterday"}}},
            "query.filter.createdDate.$gt",
            "date-time string with a zone",
        ),
        (
            {"filter": {"updatedDate": "2026-11-22T12:00:00"}},
            "query.filter.updatedDate.$eq",
            "with a zone",
        ),
        ({"filter": {"$and": []}}, "query.filter.$and", "non-empty list"),
        ({"filter": {"$or": {"id": "a"}}}, "query.filter.$or", "non-empty list"),
        ({"filter": {"$and": [{"nope": 1}]}}, "query.filter.$and[0].nope", "unknown field"),
        ({"filter": {"$or": [{"id": "a"}, 3]}}, "query.filter.$or[1]", "JSON object"),
        ({"filter": {"$not": {}}}, "query.filter.$not", "non-empty filter"),
        (
            {"filter": {"$not": {"$or": [{"id": {"$gt": 1}}]}}},
            "query.filter.$not.$or[0].id.$gt",
            "must be a string",
        ),
        ({"filter": []}, "query.filter", "JSON object"),
        ({"sort": {"fieldName": "id"}}, "query.sort", "must be a list"),
        ({"sort": [{"fieldName": "colour"}]}, "query.sort[0].fieldName", "unknown field"),
        ({"sort": [{"fieldName": "buyerInfo.phone"}]}, "query.sort[0].fieldName", "sortable: "),
        ({"sort": [{}]}, "query.sort[0].fieldName", "unknown field"),
        ({"sort": [{"fieldName": "id", "order": "UP"}]}, "query.sort[0].order", "ASC or DESC"),
        ({"sort": [{"fieldName": "id", "dir": "ASC"}]}, "query.sort[0].dir", "unknown key"),
        (
            {"sort": [{"fieldName": "id"}, {"fieldName": "id"}]},
            "query.sort[1].fieldName",
            "sorted on already",
        ),
        ({"paging": {"limit": 101}}, "query.paging.limit", "from 1 to 100 (got 101)"),
        ({"paging": {"limit": 0}}, "query.paging.limit", "from 1 to 100"),
        ({"paging": {"limit": "10"}}, "query.paging.limit", "integer"),
        ({"paging": {"limit": True}}, "query.paging.limit", "integer"),
        ({"paging": {"offset": -1}}, "query.paging.offset", "at least 0"),
        ({"paging": {"cursor": "x"}}, "query.paging.cursor", "unknown key"),
        ({"cursorPaging": {"limit": 101}}, "query.cursorPaging.limit", "from 1 to 100"),
        ({"cursorPaging": {"offset": 5}}, "query.cursorPaging.offset", "unknown key"),
        ({"cursorPaging": {"cursor": 5}}, "query.cursorPaging.cursor", "must be a string"),
        ({"paging": {}, "cursorPaging": {}}, "query", "not both"),
        ({"paging": 5}, "query.paging", "JSON object"),
        ({"where": {}}, "query.where", "unknown key"),
    ],
)
def test_each_problem_names_its_path(query: dict[str, Any], path: str, message: str):
    problems = _problems({"query": query})
    assert any(p.startswith(f"{path}: ") and message in p for p in problems), problems


def test_deep_nesting_is_refused_not_a_crash():
    deep: dict[str, Any] = {"id": "a"}
    for _ in range(2000):
        deep = {"$not": deep}
    [problem] = _problems({"query": {"filter": deep}})
    assert problem.startswith("query.filter" + ".$not" * 11 + ": ")
    assert "nest more than 10 deep" in problem


def test_the_body_itself_is_checked():
    assert _paths([1]) == ["(body)"]
    assert _paths({"query": {}, "filter": {}}) == ["(body).filter"]
    assert _paths({"query": "all"}) == ["query"]


def test_every_problem_is_listed_at_once():
    paths = _paths(
        {
            "query": {
                "filter": {"phone": "1", "status": {"$like": "x"}},
                "sort": [{"fieldName": "colour"}],
                "paging": {"limit": 101},
            }
        }
    )
    assert paths == [
        "query.paging.limit",
        "query.filter.phone",
        "query.filter.status.$like",
        "query.sort[0].fieldName",
    ]


def test_unknown_field_and_operator_messages_list_what_is_allowed():
    [field] = _problems({"query": {"filter": {"buyerInfo.phone": "1"}}})
    assert "allowed: id, checkoutId, cartId, status" in field and "buyerInfo.email" in field
    [op] = _problems({"query": {"filter": {"status": {"$like": "A%"}}}})
    assert op.endswith(
        "allowed: $eq, $ne, $exists, $in, $hasSome, $startsWith, $gt, $gte, $lt, $lte"
    )


# --- cursors -----------------------------------------------------------------------------------

BASE_FILTER: dict[str, Any] = {
    "status": "ABANDONED",
    "createdDate": {"$gte": "2026-11-01T00:00:00Z"},
}
BASE: dict[str, Any] = {
    "filter": BASE_FILTER,
    "sort": [{"fieldName": "checkoutRecoveredDate", "order": "ASC"}],
}
PARIS = timezone(timedelta(hours=1))


def _cursor(direction: Direction = Direction.NEXT) -> str:
    query = parse_query({"query": {**BASE, "cursorPaging": {"limit": 10}}})
    return make_cursor(query, (NOON.astimezone(PARIS), "c-7"), direction)


def test_a_cursor_carries_its_query_and_boundary():
    first = parse_query({"query": {**BASE, "cursorPaging": {"limit": 10}}})
    continued = parse_query({"query": {"cursorPaging": {"limit": 3, "cursor": _cursor()}}})
    assert continued == CheckoutQuery(
        filter=first.filter,
        sort=first.sort,
        limit=3,
        cursor_paging=True,
        boundary=Boundary((NOON, "c-7"), Direction.NEXT),
    )
    assert continued.raw_filter == BASE_FILTER  # carried on to the next cursor
    back = parse_query({"query": {"cursorPaging": {"cursor": _cursor(Direction.PREV)}}})
    assert back.boundary == Boundary((NOON, "c-7"), Direction.PREV)
    assert back.limit == DEFAULT_LIMIT


def test_a_cursor_is_url_safe_text():
    assert all(c.isalnum() or c in "-_" for c in _cursor())


def test_the_same_filter_and_sort_may_come_with_their_cursor():
    # Spelled differently (keys in another order, $eq, another zone, default ASC): the same query.
    same = {
        "filter": {
            "createdDate": {"$gte": "2026-11-01T01:00:00+01:00"},
            "status": {"$eq": "ABANDONED"},
        },
        "sort": [{"fieldName": "checkoutRecoveredDate"}],
    }
    query = parse_query({"query": {**same, "cursorPaging": {"cursor": _cursor()}}})
    assert query.boundary == Boundary((NOON, "c-7"), Direction.NEXT)


def test_the_order_of_list_values_does_not_change_the_filter():
    first = parse_query({"query": {"filter": {"id": {"$in": ["a", "b"]}}, "cursorPaging": {}}})
    cursor = make_cursor(first, (NOON, "a"), Direction.NEXT)
    body = {"filter": {"id": {"$in": ["b", "a"]}}, "cursorPaging": {"cursor": cursor}}
    assert parse_query({"query": body}).boundary == Boundary((NOON, "a"), Direction.NEXT)


@pytest.mark.parametrize(
    "change",
    [
        {"filter": {"status": "RECOVERED"}},
        {"filter": {}},
        {"filter": {**BASE_FILTER, "id": {"$exists": True}}},
        {"sort": [{"fieldName": "checkoutRecoveredDate", "order": "DESC"}]},
        {"sort": []},
    ],
)
def test_a_cursor_with_another_filter_or_sort_is_an_invalid_cursor(change: dict[str, Any]):
    body = {"query": {**change, "cursorPaging": {"cursor": _cursor()}}}
    [problem] = _problems(body)
    assert problem.startswith("query.cursorPaging.cursor: invalid cursor: ")
    assert "different filter or sort" in problem


def _encode(text: str) -> str:
    import base64  # noqa: PLC0415 - only to forge cursors

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "",
        _encode("not json"),
        _encode("[]"),
        _encode('{"f":{},"s":[],"v":[],"d":"next"}'),  # no sort values for the sort
        _encode('{"f":{},"s":[],"v":["2026-11-22T12:00:00Z","a"],"d":"sideways"}'),
        _encode('{"f":{},"s":[],"v":["yesterday","a"],"d":"next"}'),
        _encode('{"f":{},"s":[],"v":[null,"a"],"d":"next"}'),
        _encode('{"f":{"phone":"1"},"s":[],"v":["2026-11-22T12:00:00Z","a"],"d":"next"}'),
        _encode('{"f":{},"s":[{"fieldName":"x"}],"v":["a","b"],"d":"next"}'),
    ],
)
def test_a_cursor_this_service_never_gave_is_refused(cursor: str):
    [problem] = _problems({"query": {"cursorPaging": {"cursor": cursor}}})
    assert problem.startswith("query.cursorPaging.cursor: invalid cursor")


def test_a_forged_cursor_with_valid_content_is_just_a_query():
    # Cursors are not secret: one written by hand pages like any other.
    cursor = _encode('{"f":{},"s":[],"v":["2026-11-22T12:00:00Z","a"],"d":"next"}')
    query = parse_query({"query": {"cursorPaging": {"cursor": cursor}}})
    assert query.boundary == Boundary((NOON, "a"), Direction.NEXT)


# --- the page ----------------------------------------------------------------------------------


def test_a_page_in_the_reference_json_shape():
    checkout = sample_checkout().model_copy(update={"id": "c-1"})
    offset_page = CheckoutPage([checkout], offset=10, total=11)
    assert offset_page.to_json_dict() == {
        "abandonedCheckouts": [checkout.to_json_dict()],
        "metadata": {"count": 1, "offset": 10, "total": 11, "cursors": {}},
    }
    cursor_page = CheckoutPage([], offset=None, total=None, cursors=Cursors(next="n"))
    assert cursor_page.to_json_dict() == {
        "abandonedCheckouts": [],
        "metadata": {"count": 0, "cursors": {"next": "n"}},
    }
    assert offset_page.to_json_dict()["abandonedCheckouts"][0]["buyerInfo"]["email"]
    uncounted = CheckoutPage([checkout], offset=0, total=None, too_many_to_count=True)
    assert uncounted.to_json_dict()["metadata"] == {
        "count": 1,
        "offset": 0,
        "tooManyToCount": True,
        "cursors": {},
    }
    assert uncounted.checkouts == [checkout]
