"""What the reconciler reads of checkouts: the facts that say what their flows should be doing."""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.checkout import CheckoutStatus, StopReason
from store.rows import open_checkout
from store.schema import checkouts

_COLUMNS = (
    checkouts.c.id,
    checkouts.c.status,
    checkouts.c.stop_reason,
    checkouts.c.deleted_date,
    checkouts.c.order_id,
    checkouts.c.recovered_date,
    checkouts.c.created_date,
    checkouts.c.updated_date,
)
_CHUNK = 500


@dataclass(frozen=True)
class FlowRecord:
    checkout_id: str
    status: CheckoutStatus
    stop_reason: StopReason | None
    erased: bool
    order_id: str | None
    recovered_date: datetime | None
    created_date: datetime
    updated_date: datetime

    @property
    def open(self) -> bool:
        """Its flow should be running: abandoned, not stopped, not erased."""
        return self.status is CheckoutStatus.ABANDONED and not self.stop_reason and not self.erased


def _record(row: Row[Any]) -> FlowRecord:
    return FlowRecord(
        checkout_id=row.id,
        status=CheckoutStatus(row.status),
        stop_reason=StopReason(row.stop_reason) if row.stop_reason else None,
        erased=row.deleted_date is not None,
        order_id=row.order_id,
        recovered_date=row.recovered_date,
        created_date=row.created_date,
        updated_date=row.updated_date,
    )


async def open_records(
    engine: AsyncEngine, changed_before: datetime, after_id: str = "", limit: int = 1000
) -> list[FlowRecord]:
    """Open checkouts not changed since `changed_before` whose flow nobody has seen closed,
    by id, the page after `after_id`."""
    query: Select[Any] = (
        select(*_COLUMNS)
        .where(
            *open_checkout(),
            checkouts.c.flow_closed_date.is_(None),
            checkouts.c.updated_date < changed_before,
            checkouts.c.id > after_id,
        )
        .order_by(checkouts.c.id)
        .limit(limit)
    )
    async with engine.connect() as conn:
        return [_record(row) for row in await conn.execute(query)]


async def records_of(engine: AsyncEngine, checkout_ids: Collection[str]) -> dict[str, FlowRecord]:
    ids = list(checkout_ids)
    found: dict[str, FlowRecord] = {}
    async with engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            query: Select[Any] = select(*_COLUMNS).where(checkouts.c.id.in_(chunk))
            rows = await conn.execute(query)
            found.update((row.id, _record(row)) for row in rows)
    return found


async def mark_flows_closed(
    engine: AsyncEngine, checkout_ids: Collection[str], at: datetime
) -> None:
    """The reconciler saw these flows closed: it need not look at them again."""
    ids = list(checkout_ids)
    async with engine.begin() as conn:
        for start in range(0, len(ids), _CHUNK):
            await conn.execute(
                update(checkouts)
                .where(checkouts.c.id.in_(ids[start : start + _CHUNK]))
                .values(flow_closed_date=at)
            )
