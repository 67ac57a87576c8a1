"""The query language of `POST .../abandoned-checkout/query`: checked here, run by the store.

Pure: no I/O and no SQL. Every problem names its path in the request body (e.g.
`query.filter.$and[1].buyerInfo.phone`) so that a client sees at once what to fix.

Cursors: as in the reference API, a cursor carries the whole query it continues (filter, sort, the
boundary row's sort values and the direction), so a request with a cursor needs no filter or sort.
When a request does send them beside a cursor, they must be the cursor's own; a cursor reused with
another filter or sort is refused as an invalid cursor rather than silently paging the wrong set.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any, Protocol

from domain.checkout import (
    DATE_RANGE_PROBLEM,
    MAX_CHECKOUT_ID_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_ID_LENGTH,
    AbandonedCheckout,
    CheckoutStatus,
    in_date_range,
    text_problem,
)
from domain.errors import InvalidInputError
from domain.spelling import decode_base64url, encode_base64url

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_OFFSET = 1_000_000
"""Offset paging goes this far at most; cursor paging has no such bound."""
MAX_COUNTED = 10_000
"""Offset paging counts the matches up to this many: beyond, the page says `tooManyToCount`
instead of a `total` (as the reference does when it cannot count), so no page scans them all."""
MAX_LIST_VALUES = 100
"""Values of one $in or $hasSome."""
MAX_NESTING = 10
"""How deep $and, $or and $not may nest: far beyond real use, and well within Python's stack."""

Scalar = str | datetime
Operand = Scalar | bool | tuple[Scalar, ...]
JsonObject = dict[str, Any]


class Kind(StrEnum):
    STRING = "string"
    DATE = "date"
    STATUS = "status"


@dataclass(frozen=True)
class FieldSpec:
    column: str
    """The `checkouts` column the field lives in."""
    kind: Kind
    nullable: bool
    sortable: bool = True
    max_length: int = MAX_ID_LENGTH
    """For text: the length of the column (and of the report field) it is compared with; a
    longer value is refused, as the report field refuses it."""


FIELDS: dict[str, FieldSpec] = {
    "id": FieldSpec("id", Kind.STRING, nullable=False, max_length=MAX_CHECKOUT_ID_LENGTH),
    "checkoutId": FieldSpec("checkout_id", Kind.STRING, nullable=True),
    "cartId": FieldSpec("cart_id", Kind.STRING, nullable=True),
    "status": FieldSpec("status", Kind.STATUS, nullable=False),
    "createdDate": FieldSpec("created_date", Kind.DATE, nullable=False),
    "updatedDate": FieldSpec("updated_date", Kind.DATE, nullable=False),
    "checkoutRecoveredDate": FieldSpec("recovered_date", Kind.DATE, nullable=True),
    "orderId": FieldSpec("order_id", Kind.STRING, nullable=True),
    # Why an ABANDONED checkout takes no further step (domain.checkout.StopReason); filter only.
    "stopReason": FieldSpec("stop_reason", Kind.STRING, nullable=True, sortable=False),
    "buyerInfo.email": FieldSpec(
        "buyer_email", Kind.STRING, nullable=True, max_length=MAX_EMAIL_LENGTH
    ),
    "buyerInfo.contactId": FieldSpec("buyer_contact_id", Kind.STRING, nullable=True),
    "buyerInfo.visitorId": FieldSpec("buyer_visitor_id", Kind.STRING, nullable=True),
    "buyerInfo.memberId": FieldSpec("buyer_member_id", Kind.STRING, nullable=True),
    "buyerInfo.userId": FieldSpec("buyer_user_id", Kind.STRING, nullable=True),
}
SORTABLE = tuple(name for name, spec in FIELDS.items() if spec.sortable)


class Operator(StrEnum):
    EQ = "$eq"
    NE = "$ne"
    EXISTS = "$exists"
    IN = "$in"
    HAS_SOME = "$hasSome"
    STARTS_WITH = "$startsWith"
    GT = "$gt"
    GTE = "$gte"
    LT = "$lt"
    LTE = "$lte"


LIST_OPERATORS = frozenset({Operator.IN, Operator.HAS_SOME})
RANGE_OPERATORS = frozenset({Operator.GT, Operator.GTE, Operator.LT, Operator.LTE})


class Logic(StrEnum):
    AND = "$and"
    OR = "$or"
    NOT = "$not"


@dataclass(frozen=True)
class Condition:
    field: str
    """A key of FIELDS."""
    op: Operator
    value: Operand
    """bool for $exists, a tuple for $in and $hasSome, else a str or an aware datetime."""


@dataclass(frozen=True)
class Logical:
    op: Logic
    parts: tuple["Filter", ...]
    """Exactly one part for $not; none for an empty object, which matches everything."""


Filter = Condition | Logical


@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool


class Direction(StrEnum):
    NEXT = "next"
    PREV = "prev"


@dataclass(frozen=True)
class Boundary:
    """Where a cursor page starts: after (NEXT) or before (PREV) the row with these sort values.

    Values are never None: the store gives a missing value a stand-in that sorts first."""

    values: tuple[Scalar, ...]
    direction: Direction


@dataclass(frozen=True)
class CheckoutQuery:
    filter: Filter | None
    sort: tuple[SortKey, ...]
    """Always ends with `id`, so that the order is total and pages never overlap."""
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    cursor_paging: bool = False
    boundary: Boundary | None = None
    """Set when the request continues from a cursor."""
    raw_filter: JsonObject = field(default_factory=dict, compare=False)
    """The filter as the client wrote it: what a cursor carries, checked again when it returns."""


# --- parsing ---------------------------------------------------------------------------------


def parse_query(body: object) -> CheckoutQuery:
    """The checked query of a request body; InvalidInputError lists every problem with its path."""
    problems: list[str] = []
    top = _object(body, "(body)", problems)
    _unknown_keys(top, ("query",), "(body)", problems)
    spec = _object(top.get("query", {}), "query", problems)
    _unknown_keys(spec, ("filter", "sort", "paging", "cursorPaging"), "query", problems)
    paging = _paging(spec, problems)
    raw_filter = _object(spec.get("filter", {}), "query.filter", problems)
    query = CheckoutQuery(
        filter=_filter(raw_filter, "query.filter", problems) if raw_filter else None,
        sort=_sort(spec.get("sort", []), "query.sort", problems),
        limit=paging.limit,
        offset=paging.offset,
        cursor_paging=paging.cursor_path is not None,
        raw_filter=raw_filter,
    )
    _raise_if(problems)
    if paging.cursor is None or paging.cursor_path is None:
        return query
    return _continued(query, paging.cursor, paging.cursor_path, spec)


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise InvalidInputError("query", problems)


def _object(value: object, path: str, problems: list[str]) -> JsonObject:
    if isinstance(value, dict):
        return value
    problems.append(f"{path}: must be a JSON object")
    return {}


def _unknown_keys(
    value: JsonObject, allowed: tuple[str, ...], path: str, problems: list[str]
) -> None:
    for key in value:
        if key not in allowed:
            problems.append(f"{path}.{key}: unknown key; allowed: {', '.join(allowed)}")


@dataclass(frozen=True)
class _Paging:
    limit: int
    offset: int
    cursor_path: str | None
    """Where the cursor goes in the body, when the request pages by cursor."""
    cursor: str | None


def _paging(spec: JsonObject, problems: list[str]) -> _Paging:
    if "paging" in spec and "cursorPaging" in spec:
        problems.append("query: give paging or cursorPaging, not both")
    by_cursor = "cursorPaging" in spec
    name = "cursorPaging" if by_cursor else "paging"
    path = f"query.{name}"
    paging = _object(spec.get(name, {}), path, problems)
    _unknown_keys(paging, ("limit", "cursor") if by_cursor else ("limit", "offset"), path, problems)
    limit = _integer(paging, "limit", path, problems, default=DEFAULT_LIMIT, high=MAX_LIMIT)
    offset = _integer(paging, "offset", path, problems, default=0, low=0, high=MAX_OFFSET)
    cursor = paging.get("cursor")  # null is the same as no cursor: the first page
    if cursor is not None and not isinstance(cursor, str):
        problems.append(f"{path}.cursor: must be a string")
        cursor = None
    return _Paging(limit, offset, f"{path}.cursor" if by_cursor else None, cursor)


def _integer(
    paging: JsonObject,
    name: str,
    path: str,
    problems: list[str],
    *,
    default: int,
    low: int = 1,
    high: int,
) -> int:
    value = paging.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{path}.{name}: must be an integer")
        return default
    if not low <= value <= high:
        bound = (
            f"from {low} to {high}" if high <= MAX_LIMIT else f"at least {low}, at most {high:,}"
        )
        got = f" (got {value})" if abs(value) < 10**12 else ""  # never echo a huge number
        problems.append(f"{path}.{name}: must be {bound}{got}")
        return default
    return value


# --- filters -----------------------------------------------------------------------------------


def _filter(raw: JsonObject, path: str, problems: list[str]) -> Filter:
    """An object's entries, ANDed: fields with their conditions, and logical operators."""
    if path.count(".$") > MAX_NESTING:  # one ".$and", ".$or" or ".$not" per level
        problems.append(f"{path}: logical operators nest more than {MAX_NESTING} deep")
        return Logical(Logic.AND, ())
    parts: list[Filter] = []
    for key, value in raw.items():
        where = f"{path}.{key}"
        if key in (Logic.AND, Logic.OR):
            parts.extend(_branches(Logic(key), value, where, problems))
        elif key == Logic.NOT:
            parts.extend(_negation(value, where, problems))
        elif key.startswith("$"):
            allowed = ", ".join(Logic)
            problems.append(f"{where}: unknown logical operator; allowed: {allowed}")
        elif key not in FIELDS:
            problems.append(f"{where}: unknown field; allowed: {', '.join(FIELDS)}")
        else:
            parts.extend(_conditions(key, value, where, problems))
    return parts[0] if len(parts) == 1 else Logical(Logic.AND, tuple(parts))


def _branches(op: Logic, value: object, path: str, problems: list[str]) -> list[Filter]:
    if not isinstance(value, list) or not value:
        problems.append(f"{path}: must be a non-empty list of filters")
        return []
    branches = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        branches.append(_filter(_object(item, where, problems), where, problems))
    return [Logical(op, tuple(branches))]


def _negation(value: object, path: str, problems: list[str]) -> list[Filter]:
    inner = _object(value, path, problems)
    if not inner:
        problems.append(f"{path}: must be a non-empty filter")
        return []
    return [Logical(Logic.NOT, (_filter(inner, path, problems),))]


def _conditions(name: str, value: object, path: str, problems: list[str]) -> list[Condition]:
    if not isinstance(value, dict):
        value = {Operator.EQ.value: value}  # a bare value means equality
    if not value:
        problems.append(f"{path}: needs an operator such as $eq")
    found = []
    for op, operand in value.items():
        where = f"{path}.{op}"
        if op not in set(Operator):
            problems.append(f"{where}: unknown operator; allowed: {', '.join(Operator)}")
            continue
        checked = _operand(FIELDS[name], Operator(op), operand, where, problems)
        if checked is not None:
            found.append(Condition(name, Operator(op), checked))
    return found


def _operand(
    spec: FieldSpec, op: Operator, operand: object, path: str, problems: list[str]
) -> Operand | None:
    """The checked operand, or None after recording why it is wrong."""
    if op is Operator.EXISTS:
        if isinstance(operand, bool):
            return operand
        problems.append(f"{path}: must be true or false")
        return None
    if op is Operator.STARTS_WITH and spec.kind is not Kind.STRING:
        problems.append(f"{path}: only for text fields")
        return None
    if op in RANGE_OPERATORS and spec.kind is Kind.STATUS:
        problems.append(f"{path}: not for this field (use $eq, $ne, $in)")
        return None
    if op in LIST_OPERATORS:
        return _list(spec, operand, path, problems)
    return _scalar(spec, operand, path, problems)


def _list(
    spec: FieldSpec, operand: object, path: str, problems: list[str]
) -> tuple[Scalar, ...] | None:
    if not isinstance(operand, list) or not 1 <= len(operand) <= MAX_LIST_VALUES:
        problems.append(f"{path}: must be a list of 1 to {MAX_LIST_VALUES} values")
        return None
    values = [_scalar(spec, item, f"{path}[{i}]", problems) for i, item in enumerate(operand)]
    checked = tuple(v for v in values if v is not None)
    return checked if len(checked) == len(values) else None


def _scalar(spec: FieldSpec, value: object, path: str, problems: list[str]) -> Scalar | None:
    if not isinstance(value, str):
        hint = " (use $exists for a missing value)" if value is None else ""
        problems.append(f"{path}: must be a {_describe(spec.kind)}{hint}")
        return None
    if spec.kind is Kind.DATE:
        moment = _parsed_datetime(value)
        if moment is None:
            problems.append(f"{path}: must be a {_describe(Kind.DATE)}")
        elif not in_date_range(moment):
            problems.append(f"{path}: {DATE_RANGE_PROBLEM}")
            return None
        return moment
    if spec.kind is Kind.STATUS and value not in set(CheckoutStatus):
        problems.append(f"{path}: must be one of {', '.join(CheckoutStatus)}")
        return None
    # The report field's own rule: a value no report could have stored is refused rather than
    # matched against nothing (and PostgreSQL, which refuses NUL, is never handed one).
    problem = text_problem(value, spec.max_length)
    if problem is not None:
        problems.append(f"{path}: {problem}")
        return None
    return value


def _describe(kind: Kind) -> str:
    return {
        Kind.STRING: "string",
        Kind.DATE: "date-time string with a zone, e.g. 2026-11-22T10:00:00Z",
        Kind.STATUS: f"status string ({', '.join(CheckoutStatus)})",
    }[kind]


def _aware_datetime(value: str) -> datetime | None:
    """The aware date-time `value` spells, within the dates the engine keeps; else None."""
    moment = _parsed_datetime(value)
    return moment if moment is not None and in_date_range(moment) else None


def _parsed_datetime(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


# --- sort --------------------------------------------------------------------------------------


DEFAULT_SORT = SortKey("createdDate", descending=True)


def _sort(raw: object, path: str, problems: list[str]) -> tuple[SortKey, ...]:
    if not isinstance(raw, list):
        problems.append(f"{path}: must be a list of {{fieldName, order}}")
        raw = []
    keys: list[SortKey] = []
    for index, item in enumerate(raw):
        key = _sort_key(item, f"{path}[{index}]", problems)
        if key is None:
            continue
        if any(k.field == key.field for k in keys):
            problems.append(f"{path}[{index}].fieldName: {key.field} is sorted on already")
        else:
            keys.append(key)
    return _with_tie_breaker(keys or [DEFAULT_SORT])


def _sort_key(item: object, path: str, problems: list[str]) -> SortKey | None:
    entry = _object(item, path, problems)
    _unknown_keys(entry, ("fieldName", "order"), path, problems)
    name, order = entry.get("fieldName"), entry.get("order", "ASC")
    if name not in SORTABLE:
        problems.append(f"{path}.fieldName: unknown field; sortable: {', '.join(SORTABLE)}")
        return None
    if order not in ("ASC", "DESC"):
        problems.append(f"{path}.order: must be ASC or DESC")
        return None
    return SortKey(str(name), descending=order == "DESC")


def _with_tie_breaker(keys: list[SortKey]) -> tuple[SortKey, ...]:
    """The sort with `id` last; it follows the last key's direction, so a sort in one direction
    stays one direction and an index such as (created_date, id) can serve it."""
    if all(k.field != "id" for k in keys):
        keys = [*keys, SortKey("id", descending=keys[-1].descending)]
    return tuple(keys)


def _sort_body(sort: tuple[SortKey, ...]) -> list[JsonObject]:
    return [{"fieldName": k.field, "order": "DESC" if k.descending else "ASC"} for k in sort]


# --- cursors -----------------------------------------------------------------------------------


INVALID_CURSOR = "invalid cursor"
MAX_CURSOR_CHARS = 262_144
"""Longest cursor read back, checked before anything is decoded: room for about 190 kB of filter
JSON, far beyond any real filter (a cursor carries its filter as the client wrote it)."""
_CURSOR_KEYS = ("f", "s", "v", "d")
"""A cursor's JSON object: filter as written, sort, boundary values, direction; in this order."""


def make_cursor(query: CheckoutQuery, values: tuple[Scalar, ...], direction: Direction) -> str:
    """An opaque cursor continuing `query` after (or before) the row with these sort values.

    Unpadded base64url of compact, ASCII-only JSON; `_cursor_payload` reads back only that."""
    payload = {
        "f": query.raw_filter,
        "s": _sort_body(query.sort),
        "v": [v.isoformat() if isinstance(v, datetime) else v for v in values],
        "d": direction.value,
    }
    return encode_base64url(_cursor_json(payload).encode("ascii"))


def _cursor_json(payload: JsonObject) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True)


def _continued(query: CheckoutQuery, cursor: str, path: str, spec: JsonObject) -> CheckoutQuery:
    """`query` (with the request's limit) continuing from its cursor."""
    carried = _decode_cursor(cursor)
    if carried is None:
        raise InvalidInputError("query", [f"{path}: {INVALID_CURSOR}: not one this service gave"])
    # A filter or sort sent beside the cursor must be the cursor's own, compared once checked.
    if ("filter" in spec and not _same_filter(query.filter, carried.filter)) or (
        "sort" in spec and query.sort != carried.sort
    ):
        problem = f"{path}: {INVALID_CURSOR}: it continues a different filter or sort"
        raise InvalidInputError("query", [problem])
    return replace(carried, limit=query.limit, cursor_paging=True)


def _same_filter(one: Filter | None, other: Filter | None) -> bool:
    """Whether two filters are written alike up to spelling: a bare value or $eq, the order of
    keys and of list items, a date's zone."""
    return _canonical(one) == _canonical(other)


def _canonical(node: Filter | None) -> object:
    # Aware datetimes compare and hash by instant, so sets of them need no conversion.
    if node is None:
        return None
    if isinstance(node, Condition):
        value = frozenset(node.value) if isinstance(node.value, tuple) else node.value
        return (node.field, node.op, value)
    return (node.op, frozenset(_canonical(part) for part in node.parts))


def _decode_cursor(cursor: str) -> CheckoutQuery | None:
    """The query a cursor carries, boundary included; None for anything this service never made.

    Cursors are not secret (one written by hand pages like any other, and asks nothing a filter
    could not), so they are not signed; but they are read in one spelling, with exactly their
    keys, each of its type and checked as a request's filter and sort are."""
    payload = _cursor_payload(cursor)
    if payload is None:
        return None
    raw_filter, raw_sort, raw_values, raw_direction = (payload[key] for key in _CURSOR_KEYS)
    if not isinstance(raw_filter, dict) or raw_direction not in (d.value for d in Direction):
        return None
    problems: list[str] = []
    # _filter refuses logical operators nested beyond MAX_NESTING, as in a request.
    query_filter = _filter(raw_filter, "f", problems) if raw_filter else None
    sort = _sort(raw_sort, "s", problems)
    values = _boundary_values(sort, raw_values)
    if problems or values is None:
        return None
    return CheckoutQuery(
        filter=query_filter,
        sort=sort,
        boundary=Boundary(values, Direction(raw_direction)),
        raw_filter=raw_filter,
    )


def _cursor_payload(cursor: str) -> JsonObject | None:
    """The JSON object of a cursor spelled exactly as `make_cursor` spells one: canonical
    base64url of ASCII JSON that re-encodes to the same text, with exactly the cursor's keys."""
    raw = decode_base64url(cursor, max_chars=MAX_CURSOR_CHARS)
    if raw is None or not raw.isascii():
        return None
    text = raw.decode("ascii")
    try:
        payload = json.loads(text)
        # Written again, to refuse other spacing, escapes, key orders and repeated keys alike.
        spelled = _cursor_json(payload) if isinstance(payload, dict) else None
    except (ValueError, RecursionError):  # not JSON, too many digits, nested too deeply
        return None
    if not isinstance(payload, dict) or spelled != text or tuple(payload) != _CURSOR_KEYS:
        return None
    return payload


def _boundary_values(sort: tuple[SortKey, ...], raw: object) -> tuple[Scalar, ...] | None:
    """One string per sort key: a date with a zone for a date field, a status for `status`."""
    if not isinstance(raw, list) or len(raw) != len(sort):
        return None
    values: list[Scalar] = []
    for key, value in zip(sort, raw, strict=True):
        if not isinstance(value, str):
            return None
        kind = FIELDS[key.field].kind
        checked = _aware_datetime(value) if kind is Kind.DATE else value
        if checked is None:
            return None
        # A text value compared in SQL keeps the field's rule (PostgreSQL refuses a NUL).
        if kind is Kind.STRING and text_problem(value, FIELDS[key.field].max_length):
            return None
        if kind is Kind.STATUS and value not in set(CheckoutStatus):
            return None
        values.append(checked)
    return tuple(values)


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursors:
    next: str | None = None
    prev: str | None = None


class PageEntry(Protocol):
    """A checkout of a page as the store read it: its JSON without building the model, which
    only the callers that want one (dashboard, CLI) pay for."""

    def to_json_dict(self) -> JsonObject: ...

    def to_checkout(self) -> AbandonedCheckout: ...


@dataclass(frozen=True)
class CheckoutPage:
    entries: Sequence[AbandonedCheckout | PageEntry]
    offset: int | None
    """None on a cursor page, which has no offset."""
    total: int | None
    """How many checkouts match in all; None on a cursor page, as in the reference, and when
    more than MAX_COUNTED match (then `too_many_to_count`)."""
    cursors: Cursors = Cursors()
    too_many_to_count: bool = False
    """Offset paging only: more than MAX_COUNTED match, so `total` was not counted."""

    @cached_property
    def checkouts(self) -> list[AbandonedCheckout]:
        return [e if isinstance(e, AbandonedCheckout) else e.to_checkout() for e in self.entries]

    @property
    def count(self) -> int:
        return len(self.entries)

    def to_json_dict(self) -> JsonObject:
        metadata: JsonObject = {"count": self.count}
        if self.offset is not None:
            metadata["offset"] = self.offset
        if self.total is not None:
            metadata["total"] = self.total
        if self.too_many_to_count:
            metadata["tooManyToCount"] = True
        cursors = {"next": self.cursors.next, "prev": self.cursors.prev}
        metadata["cursors"] = {k: v for k, v in cursors.items() if v is not None}
        return {
            "abandonedCheckouts": [e.to_json_dict() for e in self.entries],
            "metadata": metadata,
        }
