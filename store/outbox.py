"""The event outbox: events written with the change they report, dispatched to Temporal after.

Writing the event in the same transaction as the change means a committed change always has its
event and a rolled-back one never does. The sequence is the entity's previous one plus one: every
writer updates the checkout's row first in the same transaction, and that row lock (PostgreSQL)
or the single writer (SQLite) keeps two writers from taking the same number.

An event belongs to its checkout's shop (taken from the checkout's row in the insert itself), and
only that shop's subscriptions receive it (store.subscriptions).
"""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.events import EventEnvelope, EventSlug
from store.schema import checkouts, events

# Built once: reused statements skip SQLAlchemy's per-call construction and cache-key work.
_INSERT_EVENT = events.insert().values(
    shop_id=select(checkouts.c.shop_id)
    .where(checkouts.c.id == bindparam("of_checkout"))
    .scalar_subquery()
)


async def append_event(
    conn: AsyncConnection,
    entity_id: str,
    slug: EventSlug,
    entity: dict[str, Any],
    at: datetime,
) -> str:
    """Write one event in the caller's transaction, numbered after the entity's last one."""
    last = await conn.scalar(
        select(func.max(events.c.sequence)).where(events.c.entity_id == entity_id)
    )
    return (await _insert_events(conn, [(entity_id, slug, entity, at)], (last or 0) + 1))[0]


async def append_events(
    conn: AsyncConnection, created: list[tuple[str, EventSlug, dict[str, Any], datetime]]
) -> list[str]:
    """The first event of each of these entities, all created in this transaction, in one
    statement (reports arriving together)."""
    return await _insert_events(conn, created, 1)


async def _insert_events(
    conn: AsyncConnection,
    items: list[tuple[str, EventSlug, dict[str, Any], datetime]],
    sequence: int,
) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in items]
    rows = [
        {
            "id": event_id,
            "entity_id": entity_id,
            "of_checkout": entity_id,
            "slug": slug,
            "sequence": sequence,
            "event_time": at,
            "entity": json.dumps(entity, separators=(",", ":")),
        }
        for event_id, (entity_id, slug, entity, at) in zip(ids, items, strict=True)
    ]
    if rows:
        await conn.execute(_INSERT_EVENT, rows)
    return ids


async def erase_event_bodies(conn: AsyncConnection, entity_id: str) -> None:
    """Replace the stored bodies of one checkout's events by its bare id (personal data erased)."""
    await conn.execute(
        update(events)
        .where(events.c.entity_id == entity_id)
        .values(entity=json.dumps({"id": entity_id}))
    )


@dataclass(frozen=True)
class PendingEvent:
    id: str
    slug: str


class Outbox:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def pending(self, limit: int = 200) -> list[PendingEvent]:
        """Events not yet handed to Temporal, oldest first."""
        query = (
            select(events.c.id, events.c.slug)
            .where(events.c.dispatched_date.is_(None))
            .order_by(events.c.event_time, events.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [PendingEvent(row.id, row.slug) for row in await conn.execute(query)]

    async def mark_dispatched(self, event_ids: list[str], at: datetime) -> None:
        if not event_ids:
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                update(events).where(events.c.id.in_(event_ids)).values(dispatched_date=at)
            )

    async def envelope(self, event_id: str) -> EventEnvelope | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(events).where(events.c.id == event_id))).first()
        if row is None:
            return None
        return EventEnvelope(
            id=row.id,
            slug=EventSlug(row.slug),
            entity_id=row.entity_id,
            event_time=row.event_time,
            entity_event_sequence=row.sequence,
            entity=json.loads(row.entity),
        )
