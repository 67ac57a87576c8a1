"""Turning stored rows back into the API's AbandonedCheckout shape, shared by reads and queries."""

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

import orjson
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Label,
    Row,
    Select,
    bindparam,
    func,
    select,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.activity import ActivityEntry, ActivityType
from domain.checkout import (
    AbandonedCheckout,
    CheckoutStatus,
    FlowState,
    RecoveryAttribution,
    StopReason,
)
from store.schema import activities, checkouts


def open_checkout() -> tuple[ColumnElement[bool], ...]:
    """A checkout whose flow may still message its buyer: abandoned, not stopped, not erased
    (`AbandonedCheckout.halted()` says the same of a loaded one)."""
    return (
        checkouts.c.status == CheckoutStatus.ABANDONED,
        checkouts.c.deleted_date.is_(None),
        checkouts.c.stop_reason.is_(None),
    )


def identity_columns(checkout: AbandonedCheckout) -> dict[str, Any]:
    """The buyer fields a query can filter on, kept in columns beside the snapshot."""
    buyer = checkout.buyer_info
    return {
        "buyer_email": buyer.email,
        "buyer_contact_id": buyer.contact_id,
        "buyer_visitor_id": buyer.visitor_id,
        "buyer_member_id": buyer.member_id,
        "buyer_user_id": buyer.user_id,
    }


ENGINE_FIELDS = {
    "id",
    "created_date",
    "updated_date",
    "status",
    "checkout_recovered_date",
    "order_id",
    "activities",
    "recovery_attribution",
    "stop_reason",
    "flow_state",
}
"""AbandonedCheckout fields the checkouts row keeps in columns, outside the snapshot."""


def checkout_from_row(row: Row[Any], entries: list[ActivityEntry]) -> AbandonedCheckout:
    """A `checkouts` row as the API shows it: the snapshot plus the engine's own fields (its
    dates typed by UtcDateTime, or read as `plain_moment`s)."""
    snapshot = AbandonedCheckout.model_validate_json(row.snapshot)
    return snapshot.model_copy(
        update={
            "id": row.id,
            "created_date": utc(row.created_date),
            "status": CheckoutStatus(row.status),
            "checkout_recovered_date": utc(row.recovered_date),
            "order_id": row.order_id,
            "updated_date": utc(row.updated_date),
            "recovery_attribution": _attribution(row),
            "stop_reason": StopReason(row.stop_reason) if row.stop_reason else None,
            "flow_state": FlowState(row.flow_state) if row.flow_state else None,
            "activities": entries,
        }
    )


JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
"""orjson writes a date-time as pydantic does: ISO 8601, microseconds only when there are some,
`Z` for UTC; a naive one (a `plain_moment` on SQLite) is UTC."""


def plain_moment(column: ColumnElement[datetime]) -> Label[datetime]:
    """A UtcDateTime column read as the driver gives it, under its own name: naive UTC on SQLite
    (the stored text parsed by SQLAlchemy's C processor), aware UTC on PostgreSQL (asyncpg's
    own), without UtcDateTime's Python step per value. orjson writes either form (JSON_OPTIONS);
    `utc` makes one aware."""
    name = getattr(column, "name", None)
    assert isinstance(name, str)
    return type_coerce(column, DateTime(timezone=True)).label(name)


def utc(moment: datetime | None) -> datetime | None:
    """An aware UTC date-time from a `plain_moment` (or a UtcDateTime value, unchanged)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


PAGE_COLUMNS = (
    "id",
    "status",
    "created_date",
    "updated_date",
    "recovered_date",
    "order_id",
    "attribution",
    "attributed_step",
    "recovered_amount",
    "stop_reason",
    "flow_state",
    "snapshot",
)
"""What a query page shows of a row: the first columns of its SELECT (PAGE_SELECTED), in the
order StoredCheckout unpacks them."""

PAGE_SELECTED = tuple(
    plain_moment(checkouts.c[name]) if name.endswith("_date") else checkouts.c[name]
    for name in PAGE_COLUMNS
)
"""PAGE_COLUMNS as a SELECT reads them, the dates as `plain_moment`s."""


class StoredCheckout:
    """A query page's checkout, straight from its row and its activity rows: `to_json_bytes` is
    the JSON of `checkout_from_row(...).to_json_dict()` (the same values; the snapshot's fields
    first), without validating the snapshot again or building models: the stored snapshot (JSON
    the store wrote from a validated model, without the engine's fields) is spliced in as it is,
    and orjson writes the engine's fields. `to_checkout` builds the model for callers that want
    one."""

    __slots__ = ("_entries", "_row")

    def __init__(self, row: Row[Any], entries: Sequence[Row[Any]]) -> None:
        self._row = row
        self._entries = entries

    def to_json_bytes(self) -> bytes:
        # Unpacked as a tuple (PAGE_COLUMNS' order), cheaper than a lookup by name each.
        (
            checkout_id,
            status,
            created,
            updated,
            recovered,
            order_id,
            attribution_kind,
            attributed_step,
            recovered_amount,
            stop_reason,
            flow_state,
            snapshot,
        ) = cast("tuple[Any, ...]", self._row)[: len(PAGE_COLUMNS)]
        engine: dict[str, Any] = {
            "id": checkout_id,
            "createdDate": created,
            "updatedDate": updated,
            "status": status,
        }
        if recovered is not None:
            engine["checkoutRecoveredDate"] = recovered
        if order_id is not None:
            engine["orderId"] = order_id
        if attribution_kind is not None:
            attribution: dict[str, Any] = {"kind": attribution_kind}
            if attributed_step is not None:
                attribution["step"] = attributed_step
            if recovered_amount is not None:
                attribution["recoveredAmount"] = recovered_amount
            engine["recoveryAttribution"] = attribution
        if stop_reason:
            engine["stopReason"] = stop_reason
        if flow_state:
            engine["flowState"] = flow_state
        engine["activities"] = [_json_entry(e) for e in self._entries]
        return splice_object(snapshot, orjson.dumps(engine, option=JSON_OPTIONS))

    def to_json_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = orjson.loads(self.to_json_bytes())
        return found

    def to_checkout(self) -> AbandonedCheckout:
        return checkout_from_row(self._row, [_entry(e) for e in self._entries])


def splice_object(stored: str, more: bytes) -> bytes:
    """The JSON object text `stored` with the members of the JSON object `more` added after its
    own (their names must differ: a snapshot never holds the engine's fields, ENGINE_FIELDS)."""
    inner = stored.strip()[1:-1].strip()
    if not inner:
        return more
    return b"".join((b"{", inner.encode(), b",", more[1:]))


def _json_entry(e: Row[Any]) -> dict[str, Any]:
    """An activity row of `newest_activity_rows` (its columns in _ENTRY_COLUMNS' order, unpacked
    as a tuple: cheaper than a lookup by name each) as its ActivityEntry's JSON."""
    _, kind, created, step, reason, consent, channel, variant, outcome, outcome_date = cast(
        "tuple[Any, ...]", e
    )
    entry: dict[str, Any] = {"type": kind, "createdDate": created}
    if step is not None:
        entry["step"] = step
    if reason is not None:
        entry["reason"] = reason
    if consent is not None:
        entry["consent"] = consent
    if channel is not None:
        entry["channel"] = channel
    if variant is not None:
        entry["variant"] = variant
    if outcome is not None:
        entry["outcome"] = outcome
        entry["outcomeDate"] = outcome_date
    return entry


def _entry(e: Row[Any]) -> ActivityEntry:
    return ActivityEntry(
        type=ActivityType(e.type),
        created_date=utc(e.created_date),
        step=e.step,
        reason=e.reason,
        consent=e.consent,
        channel=e.channel,
        variant=e.variant,
        outcome=e.outcome,
        outcome_date=utc(e.outcome_date),
    )


def _attribution(row: Row[Any]) -> RecoveryAttribution | None:
    if row.attribution is None:
        return None
    return RecoveryAttribution(
        kind=row.attribution, step=row.attributed_step, recovered_amount=row.recovered_amount
    )


async def load_activities(
    conn: AsyncConnection, checkout_ids: Sequence[str]
) -> dict[str, list[ActivityEntry]]:
    """Each checkout's activity entries, oldest first (a page's newest ones come from
    newest_activity_rows, in one statement)."""
    found: dict[str, list[ActivityEntry]] = defaultdict(list)
    if not checkout_ids:
        return found
    rows = await conn.execute(
        select(activities)
        .where(activities.c.checkout_id.in_(checkout_ids))
        .order_by(activities.c.checkout_id, activities.c.created_date, activities.c.seq)
    )
    for e in rows:
        found[e.checkout_id].append(_entry(e))
    return found


async def newest_activity_rows(
    conn: AsyncConnection, checkout_ids: Sequence[str], newest: int
) -> dict[str, list[Row[Any]]]:
    """The newest `newest` activity rows of each checkout, oldest first, in one statement: the
    window numbers each checkout's entries from its newest, along the index on (checkout_id,
    created_date, seq). Their `created_date` is a `plain_moment`."""
    found: dict[str, list[Row[Any]]] = defaultdict(list)
    if not checkout_ids:
        return found
    result = await conn.execute(_newest_statement(newest), {"ids": list(checkout_ids)})
    for e in result.all():  # one fetch, not one call per row
        found[e.checkout_id].append(e)
    return found


@cache
def _newest_statement(newest: int) -> Select[Any]:
    """Built once per `newest`: the ids are an expanding parameter."""
    rank = (
        func.row_number()
        .over(
            partition_by=activities.c.checkout_id,
            order_by=(activities.c.created_date.desc(), activities.c.seq.desc()),
        )
        .label("rank")
    )
    ranked = (
        select(*_ENTRY_COLUMNS, activities.c.seq, rank)
        .where(activities.c.checkout_id.in_(bindparam("ids", expanding=True)))
        .subquery()
    )
    shown = [
        plain_moment(ranked.c[c.name]) if c.name in _MOMENTS else ranked.c[c.name]
        for c in _ENTRY_COLUMNS
    ]
    return (
        select(*shown)
        .where(ranked.c.rank <= newest)
        .order_by(ranked.c.checkout_id, ranked.c.created_date, ranked.c.seq)
    )


_ENTRY_COLUMNS = (  # in the order _json_entry unpacks
    activities.c.checkout_id,
    activities.c.type,
    activities.c.created_date,
    activities.c.step,
    activities.c.reason,
    activities.c.consent,
    activities.c.channel,
    activities.c.variant,
    activities.c.outcome,
    activities.c.outcome_date,
)
_MOMENTS = ("created_date", "outcome_date")
