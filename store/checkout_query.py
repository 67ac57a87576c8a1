"""Running a checked query (domain.query) on the checkouts table: one statement per page.

Filters compile to SQL that never yields NULL (a missing value simply does not match, except for
$ne and $exists false), so `$not` is the exact complement of its filter. Nullable sort fields sort
as if empty ("" or the earliest date), in the ORDER BY and in the cursor's comparison alike.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, literal, not_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.query import (
    FIELDS,
    Boundary,
    CheckoutPage,
    CheckoutQuery,
    Condition,
    Direction,
    Filter,
    Kind,
    SortKey,
    make_cursor,
)
from store.rows import checkout_from_row, load_activities
from store.schema import UtcDateTime, checkouts

NEWEST_ACTIVITIES = 20
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def page_statement(query: CheckoutQuery) -> Select[Any]:
    """The SELECT of one page's rows (for cursor paging, one row more than the page)."""
    backwards = query.boundary is not None and query.boundary.direction is Direction.PREV
    statement = select(checkouts).where(_where(query))
    if query.boundary is not None:
        statement = statement.where(_after(query.sort, query.boundary))
    statement = statement.order_by(*_order(query.sort, reverse=backwards))
    if query.cursor_paging:
        # One row more than asked tells whether another page follows.
        return statement.limit(query.limit + 1)
    return statement.limit(query.limit).offset(query.offset)


async def run_query(conn: AsyncConnection, query: CheckoutQuery) -> CheckoutPage:
    backwards = query.boundary is not None and query.boundary.direction is Direction.PREV
    rows = list(await conn.execute(page_statement(query)))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    if backwards:
        rows.reverse()
    entries = await load_activities(conn, [r.id for r in rows], newest=NEWEST_ACTIVITIES)
    found = [checkout_from_row(row, entries.get(row.id, [])) for row in rows]
    if not query.cursor_paging:
        total = await conn.scalar(select(func.count()).select_from(checkouts).where(_where(query)))
        return CheckoutPage(found, offset=query.offset, total=int(total or 0))
    return _cursor_page(query, rows, found, more=more, backwards=backwards)


def _cursor_page(
    query: CheckoutQuery, rows: list[Any], found: list[Any], *, more: bool, backwards: bool
) -> CheckoutPage:
    if not rows:
        return CheckoutPage(found, offset=None, total=None)
    first, last = _sort_values(query.sort, rows[0]), _sort_values(query.sort, rows[-1])
    has_next = more if not backwards else True
    has_prev = query.boundary is not None and (more if backwards else True)
    return CheckoutPage(
        found,
        offset=None,
        total=None,
        next_cursor=make_cursor(query, last, Direction.NEXT) if has_next else None,
        prev_cursor=make_cursor(query, first, Direction.PREV) if has_prev else None,
    )


def _where(query: CheckoutQuery) -> ColumnElement[bool]:
    return _visible() if query.filter is None else and_(_visible(), _compile(query.filter))


def _visible() -> ColumnElement[bool]:
    return checkouts.c.deleted_date.is_(None)


def _compile(node: Filter) -> ColumnElement[bool]:
    if isinstance(node, Condition):
        return _condition(node)
    parts = [_compile(part) for part in node.parts]
    if node.op == "$and":
        return and_(true(), *parts)
    if node.op == "$or":
        return or_(false(), *parts)
    return not_(parts[0])


def _condition(condition: Condition) -> ColumnElement[bool]:
    spec = FIELDS[condition.field]
    column = checkouts.c[spec.column]
    value, op = condition.value, condition.op
    present = column.is_not(None)
    if op == "$exists":
        return present if value else column.is_(None)
    if op == "$ne":
        return or_(column.is_(None), column != value)
    if op in ("$in", "$hasSome"):
        return and_(present, column.in_(list(value)))
    if op == "$startsWith":
        # LIKE alone ignores case on SQLite and not on PostgreSQL; the prefix comparison makes
        # both case-sensitive, while LIKE keeps the cheap filter.
        prefix = func.substr(column, 1, len(value)) == value
        return and_(present, column.startswith(value, autoescape=True), prefix)
    comparisons = {
        "$eq": column == value,
        "$gt": column > value,
        "$gte": column >= value,
        "$lt": column < value,
        "$lte": column <= value,
    }
    return and_(present, comparisons[op])


def _sort_expression(key: SortKey) -> ColumnElement[Any]:
    spec = FIELDS[key.field]
    column = checkouts.c[spec.column]
    if not spec.nullable:
        return column
    empty = literal(_EARLIEST, UtcDateTime()) if spec.kind is Kind.DATE else literal("")
    return func.coalesce(column, empty)


def _order(sort: tuple[SortKey, ...], *, reverse: bool) -> list[ColumnElement[Any]]:
    ordered: list[ColumnElement[Any]] = []
    for key in sort:
        expression = _sort_expression(key)
        descending = key.descending != reverse
        ordered.append(expression.desc() if descending else expression.asc())
    return ordered


def _after(sort: tuple[SortKey, ...], boundary: Boundary) -> ColumnElement[bool]:
    """Rows strictly beyond the boundary in the page's direction: the keyset comparison
    (k1 > v1) OR (k1 = v1 AND k2 > v2) OR ..., with < for descending keys."""
    backwards = boundary.direction is Direction.PREV
    alternatives = []
    for index, key in enumerate(sort):
        equal_before = [
            _sort_expression(k) == v
            for k, v in zip(sort[:index], boundary.values[:index], strict=True)
        ]
        expression, value = _sort_expression(key), boundary.values[index]
        later = expression < value if key.descending != backwards else expression > value
        alternatives.append(and_(true(), *equal_before, later))
    return or_(false(), *alternatives)


def _sort_values(sort: tuple[SortKey, ...], row: Any) -> tuple[Any, ...]:
    values = []
    for key in sort:
        spec = FIELDS[key.field]
        value = getattr(row, spec.column)
        if value is None:
            value = _EARLIEST if spec.kind is Kind.DATE else ""
        values.append(value)
    return tuple(values)
