"""Turning stored rows back into the API's AbandonedCheckout shape, shared by reads and queries."""

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.activity import ActivityEntry
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
        found[e.checkout_id].append(
            ActivityEntry(
                type=e.type,
                created_date=e.created_date,
                step=e.step,
                reason=e.reason,
                consent=e.consent,
            )
        )
    if newest is not None:
        for checkout_id, entries in found.items():
            found[checkout_id] = entries[-newest:]
    return found
