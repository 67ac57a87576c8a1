"""Running a checked query (domain.query) on the checkouts table: one SELECT per page, one for the
page's activities (its newest 20 per checkout), and, when offset paging needs the total, a COUNT
capped at MAX_COUNTED (beyond it the page says tooManyToCount), so no page scans every match.

Every statement is about one shop (`shop_id`, in its WHERE): a query never sees another shop's
checkouts, and the indexes below are all led by the shop.

Indexes (store.schema) serve the patterns people run: (status, created_date, id) a status with a
createdDate range sorted by createdDate; (created_date, id) the same without the status, and the
default sort's cursor walk; (status, recovered_date, id) recovered in a date range; (order_id, id)
the orderId sort; single columns the lookups by email, contactId, checkoutId and cartId.

Filters compile to SQL that never yields NULL (a missing value simply does not match, except for
$ne and $exists false), so `$not` is the exact complement of its filter.

Nulls in the sort: a nullable sort field sorts as if empty ("" or 1970-01-01) through a COALESCE,
used alike in the ORDER BY and in the cursor's keyset comparison, so a cursor page starts exactly
where the last one ended even among rows without the value. (Such a stand-in may equal a real value,
e.g. an empty cartId; both then sort together, by id, which keeps the order total.) When the filter
itself requires the field (a condition on it, ANDed at the top, that a missing value fails), no
matching row lacks it: the bare column then sorts the same, and its index can serve the ORDER BY.

$startsWith is a range, prefix <= value < the prefix's successor, compared bytewise (code point
order: SQLite's BINARY collation, PostgreSQL's pattern operators ~>=~ and ~<~), which holds exactly
the values that start with the prefix, case-sensitively, and which an index serves.
"""

import operator
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Row,
    Select,
    and_,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from domain.activity import NEWEST_ACTIVITIES, ActivityType
from domain.query import (
    FIELDS,
    MAX_COUNTED,
    Boundary,
    CheckoutPage,
    CheckoutQuery,
    Condition,
    Cursors,
    Direction,
    Filter,
    Kind,
    Logic,
    Operator,
    Scalar,
    SortKey,
    make_cursor,
)
from domain.shops import DEFAULT_SHOP
from store.rows import (
    JSON_OPTIONS,
    PAGE_COLUMNS,
    PAGE_SELECTED,
    StoredCheckout,
    newest_activity_rows,
    utc,
)
from store.schema import UtcDateTime, activities, checkouts

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_COMPARISONS: dict[Operator, Callable[[Any, Any], Any]] = {
    Operator.EQ: operator.eq,
    Operator.GT: operator.gt,
    Operator.GTE: operator.ge,
    Operator.LT: operator.lt,
    Operator.LTE: operator.le,
}


async def run_query(
    conn: AsyncConnection, query: CheckoutQuery, *, shop_id: str, not_sent: str | None = None
) -> CheckoutPage:
    """One page of the checkouts matching `query`, each with its newest 20 activities.

    `not_sent`: only checkouts with an EMAIL_NOT_SENT entry for this reason (a NotSentReason
    value), the dashboard's filter beyond the query language; a cursor does not carry it, so
    each page's request gives it again (the dashboard's links do)."""
    statement = page_statement(query, shop_id=shop_id, not_sent=not_sent)
    fetched = list((await conn.execute(statement)).all())
    rows = fetched[: query.limit]
    if _backwards(query):
        rows.reverse()  # fetched nearest-first from the boundary; shown in the query's order
    entries = await newest_activity_rows(conn, [r.id for r in rows], NEWEST_ACTIVITIES)
    found = [StoredCheckout(row, entries.get(row.id, [])) for row in rows]
    if query.cursor_paging:
        cursors = _cursors(query, rows, more=len(fetched) > query.limit)
        return CheckoutPage(found, offset=None, total=None, cursors=cursors)
    total = await _total(conn, query, shop_id, len(rows), not_sent)
    return CheckoutPage(found, offset=query.offset, total=total, too_many_to_count=total is None)


def page_statement(
    query: CheckoutQuery, *, shop_id: str = DEFAULT_SHOP, not_sent: str | None = None
) -> Select[Any]:
    """The SELECT of one page's rows (for cursor paging, one row more than the page: whether it
    comes back tells whether another page follows). `shop_id` defaults to the single shop for
    the query plans' benchmarks and tests; `run_query` always names it."""
    required = _required_fields(query.filter)
    # The page's columns (store.rows.PAGE_SELECTED), then the sort's others, for the cursors.
    sorted_by = dict.fromkeys(FIELDS[k.field].column for k in query.sort)
    more = [checkouts.c[name] for name in sorted_by if name not in PAGE_COLUMNS]
    statement = select(*PAGE_SELECTED, *more).where(_matching(query, shop_id, not_sent))
    if query.boundary is not None:
        statement = statement.where(_beyond(query.sort, query.boundary, required))
    statement = statement.order_by(*_order(query.sort, required, reverse=_backwards(query)))
    if query.cursor_paging:
        return statement.limit(query.limit + 1)
    return statement.limit(query.limit).offset(query.offset)


def page_json(page: CheckoutPage) -> bytes:
    """`page.to_json_dict()` as JSON bytes (the same values, in the same order), written once:
    each stored checkout's JSON is spliced in as `StoredCheckout.to_json_bytes` gives it."""
    entries = b",".join(
        e.to_json_bytes()
        if isinstance(e, StoredCheckout)
        else orjson.dumps(e.to_json_dict(), option=JSON_OPTIONS)
        for e in page.entries
    )
    metadata = replace(page, entries=()).to_json_dict()["metadata"]
    metadata["count"] = page.count
    return b"".join(
        (b'{"abandonedCheckouts":[', entries, b'],"metadata":', orjson.dumps(metadata), b"}")
    )


async def _total(
    conn: AsyncConnection,
    query: CheckoutQuery,
    shop_id: str,
    shown: int,
    not_sent: str | None = None,
) -> int | None:
    """How many match in all, or None when more than MAX_COUNTED do."""
    if shown < query.limit and (shown > 0 or query.offset == 0):
        return query.offset + shown  # a short page is the last one: no COUNT needed
    if query.offset + shown > MAX_COUNTED:
        return None  # the page itself shows there are more
    counted = await conn.scalar(count_statement(query, shop_id=shop_id, not_sent=not_sent))
    return None if counted is None or counted > MAX_COUNTED else int(counted)


def count_statement(
    query: CheckoutQuery, *, shop_id: str = DEFAULT_SHOP, not_sent: str | None = None
) -> Select[Any]:
    """COUNT of the matches, stopping after MAX_COUNTED + 1 of them."""
    matching = _matching(query, shop_id, not_sent)
    matches = select(checkouts.c.id).where(matching).limit(MAX_COUNTED + 1).subquery()
    return select(func.count()).select_from(matches)


def _backwards(query: CheckoutQuery) -> bool:
    return query.boundary is not None and query.boundary.direction is Direction.PREV


def _cursors(query: CheckoutQuery, rows: list[Row[Any]], *, more: bool) -> Cursors:
    """Cursors from the page's first and last rows. A page reached from a cursor always has
    rows on the side it came from; on the side it moved towards, `more` tells."""
    if not rows:
        return Cursors()
    came_from_cursor = query.boundary is not None
    backwards = _backwards(query)
    has_next = came_from_cursor if backwards else more
    has_prev = more if backwards else came_from_cursor
    first, last = _sort_values(query.sort, rows[0]), _sort_values(query.sort, rows[-1])
    return Cursors(
        next=make_cursor(query, last, Direction.NEXT) if has_next else None,
        prev=make_cursor(query, first, Direction.PREV) if has_prev else None,
    )


# --- filter ------------------------------------------------------------------------------------


def _matching(
    query: CheckoutQuery, shop_id: str, not_sent: str | None = None
) -> ColumnElement[bool]:
    # Erased checkouts are never listed, nor another shop's.
    visible = and_(checkouts.c.shop_id == shop_id, checkouts.c.deleted_date.is_(None))
    found = visible if query.filter is None else and_(visible, _compile(query.filter))
    return found if not_sent is None else and_(found, _not_sent_because(not_sent))


def _not_sent_because(reason: str) -> ColumnElement[bool]:
    """The checkout has an EMAIL_NOT_SENT entry for `reason`: the reason itself, or the reason
    with its details (`condition_failed:min_total`), found by ix_activities_type_reason."""
    with_details = _starts_with(activities.c.reason, f"{reason}:")
    return checkouts.c.id.in_(
        select(activities.c.checkout_id).where(
            activities.c.type == ActivityType.EMAIL_NOT_SENT,
            or_(activities.c.reason == reason, with_details),
        )
    )


def _compile(node: Filter) -> ColumnElement[bool]:
    if isinstance(node, Condition):
        return _condition(node)
    parts = [_compile(part) for part in node.parts]
    if node.op is Logic.NOT:
        return not_(parts[0])
    if not parts:
        return true()  # an empty filter object matches everything
    return and_(*parts) if node.op is Logic.AND else or_(*parts)


def _condition(condition: Condition) -> ColumnElement[bool]:
    spec = FIELDS[condition.field]
    column = checkouts.c[spec.column]
    op, value = condition.op, condition.value
    if op is Operator.EXISTS:
        return column.is_not(None) if value else column.is_(None)
    if op is Operator.NE:
        different = column != value
        return or_(column.is_(None), different) if spec.nullable else different
    matched: ColumnElement[bool]
    if op in (Operator.IN, Operator.HAS_SOME):
        assert isinstance(value, tuple)
        matched = column.in_(value)
    elif op is Operator.STARTS_WITH:
        assert isinstance(value, str)
        matched = _starts_with(column, value)
    else:
        matched = _compare(column, op, value)
    # NULL = x is NULL, and NOT NULL is NULL too: without this a $not would drop rows lacking
    # the value instead of keeping them.
    return and_(column.is_not(None), matched) if spec.nullable else matched


def _starts_with(column: ColumnElement[Any], prefix: str) -> ColumnElement[bool]:
    at_least: ColumnElement[bool] = _BytewiseAtLeast(column, literal(prefix))
    following = _successor(prefix)
    if following is None:
        return at_least  # "" or only U+10FFFF: nothing sorts after every value it starts
    return and_(at_least, _BytewiseBelow(column, literal(following)))


def _successor(prefix: str) -> str | None:
    """The least string after every string that starts with `prefix`, in code point order."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if last == 0xD800:
            last = 0xE000  # surrogates are no characters of a stored text
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


class _BytewiseAtLeast(FunctionElement[bool]):
    """left >= right, comparing text bytewise (code point order) on either database."""

    type = Boolean()
    inherit_cache = True
    _is_implicitly_boolean = True  # a comparison: no "= 1" after it where booleans are integers


class _BytewiseBelow(FunctionElement[bool]):
    """left < right, comparing text bytewise (code point order) on either database."""

    type = Boolean()
    inherit_cache = True
    _is_implicitly_boolean = True  # a comparison: no "= 1" after it where booleans are integers


def _binary(element: FunctionElement[bool], compiler: SQLCompiler, op: str, **kw: Any) -> str:
    left, right = element.clauses
    return f"{compiler.process(left, **kw)} {op} {compiler.process(right, **kw)}"


@compiles(_BytewiseAtLeast)
def _at_least(element: _BytewiseAtLeast, compiler: SQLCompiler, **kw: Any) -> str:
    return _binary(element, compiler, ">=", **kw)  # SQLite: BINARY, the default collation


@compiles(_BytewiseBelow)
def _below(element: _BytewiseBelow, compiler: SQLCompiler, **kw: Any) -> str:
    return _binary(element, compiler, "<", **kw)


@compiles(_BytewiseAtLeast, "postgresql")
def _at_least_pg(element: _BytewiseAtLeast, compiler: SQLCompiler, **kw: Any) -> str:
    return _binary(element, compiler, "~>=~", **kw)  # the pattern operators, of text_pattern_ops


@compiles(_BytewiseBelow, "postgresql")
def _below_pg(element: _BytewiseBelow, compiler: SQLCompiler, **kw: Any) -> str:
    return _binary(element, compiler, "~<~", **kw)


def _compare(expression: ColumnElement[Any], op: Operator, value: object) -> ColumnElement[bool]:
    compared: ColumnElement[bool] = _COMPARISONS[op](expression, value)
    return compared


# --- sort and keyset ---------------------------------------------------------------------------


def _required_fields(node: Filter | None) -> frozenset[str]:
    """Fields the filter requires a value of: conditions ANDed at its top level that a missing
    value fails (all but $ne and $exists false)."""
    if node is None:
        return frozenset()
    if isinstance(node, Condition):
        lacking_matches = node.op is Operator.NE or (
            node.op is Operator.EXISTS and node.value is False
        )
        return frozenset() if lacking_matches else frozenset({node.field})
    if node.op is not Logic.AND:
        return frozenset()
    return frozenset().union(*(_required_fields(part) for part in node.parts))


def _sort_expression(key: SortKey, required: frozenset[str]) -> ColumnElement[Any]:
    spec = FIELDS[key.field]
    column = checkouts.c[spec.column]
    if not spec.nullable or key.field in required:
        return column  # the bare column, so that its index can serve the ORDER BY
    stand_in = literal(_EARLIEST, UtcDateTime()) if spec.kind is Kind.DATE else literal("")
    return func.coalesce(column, stand_in)


def _order(
    sort: tuple[SortKey, ...], required: frozenset[str], *, reverse: bool
) -> list[ColumnElement[Any]]:
    ordered: list[ColumnElement[Any]] = []
    for key in sort:
        expression = _sort_expression(key, required)
        ordered.append(expression.desc() if key.descending != reverse else expression.asc())
    return ordered


def _beyond(
    sort: tuple[SortKey, ...], boundary: Boundary, required: frozenset[str]
) -> ColumnElement[bool]:
    """Rows strictly past the boundary in the page's direction, by the keyset comparison
    (k1 > v1) OR (k1 = v1 AND k2 > v2) OR ... (with < where the key runs downwards)."""
    backwards = boundary.direction is Direction.PREV
    expressions = [_sort_expression(key, required) for key in sort]
    downwards = [key.descending != backwards for key in sort]
    alternatives = []
    for index, (expression, value) in enumerate(zip(expressions, boundary.values, strict=True)):
        ties = [e == v for e, v in zip(expressions[:index], boundary.values, strict=False)]
        past = _compare(expression, Operator.LT if downwards[index] else Operator.GT, value)
        alternatives.append(and_(*ties, past))
    # The first key's non-strict bound adds nothing logically; it is the form a database turns
    # into an index range scan, which the OR alone hides from some planners.
    reach = _compare(
        expressions[0], Operator.LTE if downwards[0] else Operator.GTE, boundary.values[0]
    )
    return and_(reach, or_(*alternatives))


def _sort_values(sort: tuple[SortKey, ...], row: Row[Any]) -> tuple[Scalar, ...]:
    """The row's sort values as `_sort_expression` sees them (with stand-ins for nulls)."""
    values: list[Scalar] = []
    for key in sort:
        spec = FIELDS[key.field]
        value = getattr(row, spec.column)
        if value is None:
            value = _EARLIEST if spec.kind is Kind.DATE else ""
        elif isinstance(value, datetime):
            value = utc(value)  # a page's dates are plain moments: naive on SQLite
        values.append(value)
    return tuple(values)
