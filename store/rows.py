"""Turning stored rows back into the API's AbandonedCheckout shape, shared by reads and queries."""

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, bindparam, func, select
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
    """A `checkouts` row as the API shows it: the snapshot plus the engine's own fields."""
    snapshot = AbandonedCheckout.model_validate_json(row.snapshot)
    return snapshot.model_copy(
        update={
            "id": row.id,
            "created_date": row.created_date,
            "status": CheckoutStatus(row.status),
            "checkout_recovered_date": row.recovered_date,
            "order_id": row.order_id,
            "updated_date": row.updated_date,
            "recovery_attribution": _attribution(row),
            "stop_reason": StopReason(row.stop_reason) if row.stop_reason else None,
            "flow_state": FlowState(row.flow_state) if row.flow_state else None,
            "activities": entries,
        }
    )


class StoredCheckout:
    """A query page's checkout, straight from its row and its activity rows: `to_json_dict` is
    what `checkout_from_row(...).to_json_dict()` gives, without validating the snapshot again
    (the store wrote it from a validated model, in that JSON form) and without building models;
    `to_checkout` builds the model for callers that want one."""

    __slots__ = ("_entries", "_row")

    def __init__(self, row: Row[Any], entries: Sequence[Row[Any]]) -> None:
        self._row = row
        self._entries = entries

    def to_json_dict(self) -> dict[str, Any]:
        row = self._row
        data: dict[str, Any] = json.loads(row.snapshot)
        data["id"] = row.id
        data["createdDate"] = _json_moment(row.created_date)
        data["updatedDate"] = _json_moment(row.updated_date)
        data["status"] = row.status
        _put(data, "checkoutRecoveredDate", row.recovered_date and _json_moment(row.recovered_date))
        _put(data, "orderId", row.order_id)
        attribution: dict[str, Any] | None = None
        if row.attribution is not None:
            attribution = {"kind": row.attribution}
            _put(attribution, "step", row.attributed_step)
            _put(attribution, "recoveredAmount", row.recovered_amount)
        _put(data, "recoveryAttribution", attribution)
        _put(data, "stopReason", row.stop_reason or None)
        _put(data, "flowState", row.flow_state or None)
        data["activities"] = [_json_entry(e) for e in self._entries]
        return data

    def to_checkout(self) -> AbandonedCheckout:
        return checkout_from_row(self._row, [_entry(e) for e in self._entries])


def _put(data: dict[str, Any], key: str, value: object) -> None:
    """The field as `exclude_none` shows it: absent when None."""
    if value is None:
        data.pop(key, None)
    else:
        data[key] = value


def _json_moment(moment: datetime) -> str:
    """A stored (UTC) date-time as pydantic writes it in JSON: ISO 8601 with `Z`."""
    text = moment.isoformat()
    return f"{text[:-6]}Z" if text.endswith("+00:00") else text


def _json_entry(e: Row[Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": e.type, "createdDate": _json_moment(e.created_date)}
    if e.step is not None:
        entry["step"] = e.step
    if e.reason is not None:
        entry["reason"] = e.reason
    if e.consent is not None:
        entry["consent"] = e.consent
    return entry


def _entry(e: Row[Any]) -> ActivityEntry:
    return ActivityEntry(
        type=ActivityType(e.type),
        created_date=e.created_date,
        step=e.step,
        reason=e.reason,
        consent=e.consent,
    )


def _attribution(row: Row[Any]) -> RecoveryAttribution | None:
    if row.attribution is None:
        return None
    return RecoveryAttribution(
        kind=row.attribution, step=row.attributed_step, recovered_amount=row.recovered_amount
    )


async def load_activities(
    conn: AsyncConnection, checkout_ids: Sequence[str], newest: int | None = None
) -> dict[str, list[ActivityEntry]]:
    """Each checkout's activity entries, oldest first; only the `newest` N of each when given."""
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
    if newest is not None:
        for checkout_id, entries in found.items():
            found[checkout_id] = entries[-newest:]
    return found


async def newest_activity_rows(
    conn: AsyncConnection, checkout_ids: Sequence[str], newest: int
) -> dict[str, list[Row[Any]]]:
    """The newest `newest` activity rows of each checkout, oldest first, in one statement: the
    window numbers each checkout's entries from its newest, along the index on (checkout_id,
    created_date, seq)."""
    found: dict[str, list[Row[Any]]] = defaultdict(list)
    if not checkout_ids:
        return found
    for e in await conn.execute(_newest_statement(newest), {"ids": list(checkout_ids)}):
        found[e.checkout_id].append(e)
    return found


def _newest_statement(newest: int) -> Select[Any]:
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
    return (
        select(*(ranked.c[c.name] for c in _ENTRY_COLUMNS))
        .where(ranked.c.rank <= newest)
        .order_by(ranked.c.checkout_id, ranked.c.created_date, ranked.c.seq)
    )


_ENTRY_COLUMNS = (
    activities.c.checkout_id,
    activities.c.type,
    activities.c.created_date,
    activities.c.step,
    activities.c.reason,
    activities.c.consent,
)
