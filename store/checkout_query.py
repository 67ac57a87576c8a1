"""Running a checked query (domain.query) on the checkouts table: one SELECT per page, one for the
page's activities, and a COUNT only when offset paging needs the total.

Filters compile to SQL that never yields NULL (a missing value simply does not match, except for
$ne and $exists false), so `$not` is the exact complement of its filter.

Nulls in the sort: a nullable sort field sorts as if empty ("" or 1970-01-01) through a COALESCE,
used alike in the ORDER BY and in the cursor's keyset comparison, so a cursor page starts exactly
where the last one ended even among rows without the value. (Such a stand-in may equal a real value,
e.g. an empty cartId; both then sort together, by id, which keeps the order total.)
"""

import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, func, literal, not_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.activity import NEWEST_ACTIVITIES
from domain.query import (
    FIELDS,
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
from store.rows import checkout_from_row, load_activities
from store.schema import UtcDateTime, checkouts

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_COMPARISONS: dict[Operator, Callable[[Any, Any], Any]] = {
    Operator.EQ: operator.eq,
    Operator.GT: operator.gt,
    Operator.GTE: operator.ge,
    Operator.LT: operator.lt,
    Operator.LTE: operator.le,
}


async def run_query(conn: AsyncConnection, query: CheckoutQuery) -> CheckoutPage:
    """One page of the checkouts matching `query`, each with its newest 20 activities."""
    fetched = list((await conn.execute(page_statement(query))).all())
    rows = fetched[: query.limit]
    if _backwards(query):
        rows.reverse()  # fetched nearest-first from the boundary; shown in the query's order
    entries = await load_activities(conn, [r.id for r in rows], newest=NEWEST_ACTIVITIES)
    found = [checkout_from_row(row, entries.get(row.id, [])) for row in rows]
    if query.cursor_paging:
        cursors = _cursors(query, rows, more=len(fetched) > query.limit)
        return CheckoutPage(found, offset=None, total=None, cursors=cursors)
    return CheckoutPage(found, offset=query.offset, total=await _total(conn, query, len(rows)))


def page_statement(query: CheckoutQuery) -> Select[Any]:
    """The SELECT of one page's rows (for cursor paging, one row more than the page: whether it
    comes back tells whether another page follows)."""
    statement = select(checkouts).where(_matching(query))
    if query.boundary is not None:
        statement = statement.where(_beyond(query.sort, query.boundary))
    statement = statement.order_by(*_order(query.sort, reverse=_backwards(query)))
    if query.cursor_paging:
        return statement.limit(query.limit + 1)
    return statement.limit(query.limit).offset(query.offset)


async def _total(conn: AsyncConnection, query: CheckoutQuery, shown: int) -> int:
    if shown < query.limit and (shown > 0 or query.offset == 0):
        return query.offset + shown  # a short page is the last one: no COUNT needed
    counted = await conn.scalar(select(func.count()).select_from(checkouts).where(_matching(query)))
    return int(counted or 0)


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


def _matching(query: CheckoutQuery) -> ColumnElement[bool]:
    visible = checkouts.c.deleted_date.is_(None)  # erased checkouts are never listed
    return visible if query.filter is None else and_(visible, _compile(query.filter))


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
        # LIKE ignores case on SQLite and not on PostgreSQL; comparing the prefix as well makes
        # both case-sensitive, while LIKE (escaped) keeps the cheap first filter.
        prefix = func.substr(column, 1, len(value)) == value
        matched = and_(column.startswith(value, autoescape=True), prefix)
    else:
        matched = _compare(column, op, value)
    # NULL = x is NULL, and NOT NULL is NULL too: without this a $not would drop rows lacking
    # the value instead of keeping them.
    return and_(column.is_not(None), matched) if spec.nullable else matched


def _compare(expression: ColumnElement[Any], op: Operator, value: object) -> ColumnElement[bool]:
    compared: ColumnElement[bool] = _COMPARISONS[op](expression, value)
    return compared


# --- sort and keyset ---------------------------------------------------------------------------


def _sort_expression(key: SortKey) -> ColumnElement[Any]:
    spec = FIELDS[key.field]
    column = checkouts.c[spec.column]
    if not spec.nullable:
        return column  # the bare column, so that its index can serve the ORDER BY
    stand_in = literal(_EARLIEST, UtcDateTime()) if spec.kind is Kind.DATE else literal("")
    return func.coalesce(column, stand_in)


def _order(sort: tuple[SortKey, ...], *, reverse: bool) -> list[ColumnElement[Any]]:
    ordered: list[ColumnElement[Any]] = []
    for key in sort:
        expression = _sort_expression(key)
        ordered.append(expression.desc() if key.descending != reverse else expression.asc())
    return ordered


def _beyond(sort: tuple[SortKey, ...], boundary: Boundary) -> ColumnElement[bool]:
    """Rows strictly past the boundary in the page's direction, by the keyset comparison
    (k1 > v1) OR (k1 = v1 AND k2 > v2) OR ... (with < where the key runs downwards)."""
    backwards = boundary.direction is Direction.PREV
    expressions = [_sort_expression(key) for key in sort]
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
        values.append(value)
    return tuple(values)
