"""The query language of `POST .../abandoned-checkout/query`: checked here, run by the store.

Pure: no I/O and no SQL. Every problem names its path in the request body (e.g.
`query.filter.$and[1].buyerInfo.phone`) so that a client sees at once what to fix.

A cursor carries the whole query it continues (filter, sort, the boundary row's sort values and
the direction), as the reference API's cursors do: a request with a cursor sends no filter or sort.
"""

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.checkout import AbandonedCheckout, CheckoutStatus
from domain.errors import InvalidInputError

DEFAULT_LIMIT = 50
MAX_LIMIT = 100


class Kind(StrEnum):
    STRING = "string"
    DATE = "date"
    STATUS = "status"


@dataclass(frozen=True)
class FieldSpec:
    column: str
    kind: Kind
    nullable: bool


FIELDS: dict[str, FieldSpec] = {
    "id": FieldSpec("id", Kind.STRING, nullable=False),
    "checkoutId": FieldSpec("checkout_id", Kind.STRING, nullable=True),
    "cartId": FieldSpec("cart_id", Kind.STRING, nullable=True),
    "status": FieldSpec("status", Kind.STATUS, nullable=False),
    "createdDate": FieldSpec("created_date", Kind.DATE, nullable=False),
    "updatedDate": FieldSpec("updated_date", Kind.DATE, nullable=False),
    "checkoutRecoveredDate": FieldSpec("recovered_date", Kind.DATE, nullable=True),
    "orderId": FieldSpec("order_id", Kind.STRING, nullable=True),
    "buyerInfo.email": FieldSpec("buyer_email", Kind.STRING, nullable=True),
    "buyerInfo.contactId": FieldSpec("buyer_contact_id", Kind.STRING, nullable=True),
    "buyerInfo.visitorId": FieldSpec("buyer_visitor_id", Kind.STRING, nullable=True),
    "buyerInfo.memberId": FieldSpec("buyer_member_id", Kind.STRING, nullable=True),
    "buyerInfo.userId": FieldSpec("buyer_user_id", Kind.STRING, nullable=True),
}

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
LISTS = ("$in", "$hasSome")
OPERATORS = (*COMPARISONS, *LISTS, "$exists", "$startsWith")
_ORDERED_KINDS = (Kind.STRING, Kind.DATE)


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any
    """A str, datetime or bool, or a tuple of str/datetime for $in and $hasSome."""


@dataclass(frozen=True)
class Logical:
    op: str  # "$and", "$or" or "$not"
    parts: tuple["Filter", ...]


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
    """Where a cursor page starts: after (NEXT) or before (PREV) the row with these sort values."""

    values: tuple[Any, ...]
    direction: Direction


@dataclass(frozen=True)
class CheckoutQuery:
    filter: Filter | None
    sort: tuple[SortKey, ...]
    """Always ends with `id`, so that the order is total and pages never overlap."""
    limit: int
    offset: int = 0
    cursor_paging: bool = False
    boundary: Boundary | None = None
    raw_filter: dict[str, Any] = field(default_factory=dict, compare=False)
    """The filter as the client sent it, carried in cursors."""


# --- parsing ---------------------------------------------------------------------------------


def parse_query(body: object) -> CheckoutQuery:
    """The checked query of a request body; InvalidInputError lists every problem with its path."""
    problems: list[str] = []
    query = _object(body, "(body)", problems)
    _unknown_keys(query, ("query",), "(body)", problems)
    spec = _object(query.get("query", {}), "query", problems)
    _unknown_keys(spec, ("filter", "sort", "paging", "cursorPaging"), "query", problems)
    if "paging" in spec and "cursorPaging" in spec:
        problems.append("query: give paging or cursorPaging, not both")
    cursor_paging = "cursorPaging" in spec
    paging_path = "query.cursorPaging" if cursor_paging else "query.paging"
    paging = _object(
        spec.get("cursorPaging" if cursor_paging else "paging", {}), paging_path, problems
    )
    allowed = ("limit", "cursor") if cursor_paging else ("limit", "offset")
    _unknown_keys(paging, allowed, paging_path, problems)
    limit = _integer(
        paging, "limit", paging_path, problems, default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT
    )
    offset = _integer(paging, "offset", paging_path, problems, default=0, low=0, high=None)

    cursor = paging.get("cursor") if cursor_paging else None
    if cursor is not None:
        if "filter" in spec or "sort" in spec:
            problems.append("query: a request with a cursor sends no filter or sort")
        if not isinstance(cursor, str):
            problems.append(f"{paging_path}.cursor: must be a string")
        else:
            return _from_cursor(cursor, limit, f"{paging_path}.cursor", problems)
    raw_filter = _object(spec.get("filter", {}), "query.filter", problems)
    parsed_filter = _filter(raw_filter, "query.filter", problems) if raw_filter else None
    sort = _sort(spec.get("sort", []), problems)
    _raise_if(problems)
    return CheckoutQuery(
        filter=parsed_filter,
        sort=sort,
        limit=limit,
        offset=offset,
        cursor_paging=cursor_paging,
        raw_filter=raw_filter,
    )


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise InvalidInputError("query", problems)


def _object(value: object, path: str, problems: list[str]) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    problems.append(f"{path}: must be a JSON object")
    return {}


def _unknown_keys(
    value: dict[str, Any], allowed: tuple[str, ...], path: str, problems: list[str]
) -> None:
    for key in value:
        if key not in allowed:
            problems.append(f"{path}.{key}: unknown key; allowed: {', '.join(allowed)}")


def _integer(
    paging: dict[str, Any],
    name: str,
    path: str,
    problems: list[str],
    *,
    default: int,
    low: int,
    high: int | None,
) -> int:
    value = paging.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{path}.{name}: must be an integer")
        return default
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        problems.append(f"{path}.{name}: must be {bound} (got {value})")
        return default
    return value


def _filter(raw: dict[str, Any], path: str, problems: list[str]) -> Filter:
    """An object's entries, ANDed: fields with their conditions, and logical operators."""
    parts: list[Filter] = []
    for key, value in raw.items():
        where = f"{path}.{key}"
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                problems.append(f"{where}: must be a non-empty list of filters")
                continue
            items = [
                _filter(_object(item, f"{where}[{i}]", problems), f"{where}[{i}]", problems)
                for i, item in enumerate(value)
            ]
            parts.append(Logical(key, tuple(items)))
        elif key == "$not":
            inner = _object(value, where, problems)
            if not inner:
                problems.append(f"{where}: must be a non-empty filter")
                continue
            parts.append(Logical("$not", (_filter(inner, where, problems),)))
        elif key.startswith("$"):
            problems.append(f"{where}: unknown logical operator; allowed: $and, $or, $not")
        elif key not in FIELDS:
            problems.append(f"{where}: unknown field; filterable: {', '.join(FIELDS)}")
        else:
            parts.extend(_conditions(key, value, where, problems))
    return parts[0] if len(parts) == 1 else Logical("$and", tuple(parts))


def _conditions(name: str, value: object, path: str, problems: list[str]) -> list[Condition]:
    if not isinstance(value, dict):
        value = {"$eq": value}  # a bare value means equality
    if not value:
        problems.append(f"{path}: needs an operator such as $eq")
    found = []
    for op, operand in value.items():
        where = f"{path}.{op}"
        if op not in OPERATORS:
            problems.append(f"{where}: unknown operator; allowed: {', '.join(OPERATORS)}")
            continue
        checked = _operand(FIELDS[name], op, operand, where, problems)
        if checked is not _INVALID:
            found.append(Condition(name, op, checked))
    return found


_INVALID = object()


def _operand(spec: FieldSpec, op: str, operand: object, path: str, problems: list[str]) -> Any:
    if op == "$exists":
        if not isinstance(operand, bool):
            problems.append(f"{path}: must be true or false")
            return _INVALID
        return operand
    if op == "$startsWith" and spec.kind is not Kind.STRING:
        problems.append(f"{path}: only for text fields")
        return _INVALID
    if op in ("$gt", "$gte", "$lt", "$lte") and spec.kind not in _ORDERED_KINDS:
        problems.append(f"{path}: not for this field (use $eq, $ne, $in)")
        return _INVALID
    if op in LISTS:
        return _list(spec, operand, path, problems)
    return _scalar(spec, operand, path, problems)


def _list(spec: FieldSpec, operand: object, path: str, problems: list[str]) -> Any:
    if not isinstance(operand, list) or not operand or len(operand) > MAX_LIMIT:
        problems.append(f"{path}: must be a list of 1 to {MAX_LIMIT} values")
        return _INVALID
    values = [_scalar(spec, item, f"{path}[{i}]", problems) for i, item in enumerate(operand)]
    return _INVALID if any(v is _INVALID for v in values) else tuple(values)


def _scalar(spec: FieldSpec, value: object, path: str, problems: list[str]) -> Any:
    if not isinstance(value, str):
        problems.append(f"{path}: must be a {_describe(spec.kind)}")
        return _INVALID
    if spec.kind is Kind.DATE:
        return _date(value, path, problems)
    if spec.kind is Kind.STATUS and value not in set(CheckoutStatus):
        problems.append(f"{path}: must be one of {', '.join(CheckoutStatus)}")
        return _INVALID
    if len(value) > 500:
        problems.append(f"{path}: longer than 500 characters")
        return _INVALID
    return value


def _describe(kind: Kind) -> str:
    return {
        Kind.STRING: "string",
        Kind.DATE: "date-time string with a zone, e.g. 2026-11-22T10:00:00Z",
        Kind.STATUS: "status string",
    }[kind]


def _date(value: str, path: str, problems: list[str]) -> Any:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        problems.append(f"{path}: must be a {_describe(Kind.DATE)}")
        return _INVALID
    return moment


def _sort(raw: object, problems: list[str]) -> tuple[SortKey, ...]:
    if not isinstance(raw, list):
        problems.append("query.sort: must be a list of {fieldName, order}")
        return _with_tie_breaker([])
    keys: list[SortKey] = []
    for index, item in enumerate(raw):
        where = f"query.sort[{index}]"
        entry = _object(item, where, problems)
        _unknown_keys(entry, ("fieldName", "order"), where, problems)
        name, order = entry.get("fieldName"), entry.get("order", "ASC")
        if name not in FIELDS:
            problems.append(f"{where}.fieldName: unknown field; sortable: {', '.join(FIELDS)}")
        elif order not in ("ASC", "DESC"):
            problems.append(f"{where}.order: must be ASC or DESC")
        elif any(k.field == name for k in keys):
            problems.append(f"{where}.fieldName: {name} is sorted on already")
        else:
            keys.append(SortKey(name, order == "DESC"))
    return _with_tie_breaker(keys or [SortKey("createdDate", descending=True)])


def _with_tie_breaker(keys: list[SortKey]) -> tuple[SortKey, ...]:
    if not keys:
        keys = [SortKey("createdDate", descending=True)]
    if all(k.field != "id" for k in keys):
        keys.append(SortKey("id", descending=keys[-1].descending))
    return tuple(keys)


# --- cursors -----------------------------------------------------------------------------------


def make_cursor(query: CheckoutQuery, values: tuple[Any, ...], direction: Direction) -> str:
    """An opaque cursor continuing `query` after (or before) the row with these sort values."""
    payload = {
        "f": query.raw_filter,
        "s": [[k.field, "DESC" if k.descending else "ASC"] for k in query.sort],
        "v": [v.isoformat() if isinstance(v, datetime) else v for v in values],
        "d": direction.value,
    }
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def _from_cursor(cursor: str, limit: int, path: str, problems: list[str]) -> CheckoutQuery:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        raw_filter, raw_sort, raw_values = payload["f"], payload["s"], payload["v"]
        direction = Direction(payload["d"])
        body = {"query": {"filter": raw_filter, "sort": _sort_body(raw_sort)}}
        continued = parse_query(body)
        if len(raw_values) != len(continued.sort):
            raise ValueError("sort values do not match the sort")
        values = tuple(
            _boundary_value(FIELDS[k.field], v)
            for k, v in zip(continued.sort, raw_values, strict=True)
        )
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error, InvalidInputError):
        problems.append(f"{path}: not a cursor this service gave out")
        _raise_if(problems)
        raise AssertionError("unreachable") from None
    _raise_if(problems)
    return CheckoutQuery(
        filter=continued.filter,
        sort=continued.sort,
        limit=limit,
        cursor_paging=True,
        boundary=Boundary(values, direction),
        raw_filter=continued.raw_filter,
    )


def _sort_body(raw_sort: list[list[str]]) -> list[dict[str, str]]:
    return [{"fieldName": name, "order": order} for name, order in raw_sort]


def _boundary_value(spec: FieldSpec, value: object) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("boundary values are strings")
    if spec.kind is Kind.DATE:
        return datetime.fromisoformat(value)
    return value


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckoutPage:
    checkouts: list[AbandonedCheckout]
    offset: int | None
    total: int | None
    next_cursor: str | None = None
    prev_cursor: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"count": len(self.checkouts)}
        if self.offset is not None:
            metadata["offset"] = self.offset
        if self.total is not None:
            metadata["total"] = self.total
        cursors = {"next": self.next_cursor, "prev": self.prev_cursor}
        metadata["cursors"] = {k: v for k, v in cursors.items() if v is not None}
        return {
            "abandonedCheckouts": [c.to_json_dict() for c in self.checkouts],
            "metadata": metadata,
        }
