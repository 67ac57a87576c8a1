"""The store on SQLAlchemy's async engine: SQLite by default, any SQLAlchemy async URL in principle.

Every write that a retried activity can repeat is an insert-or-ignore on a unique key, so retries
never duplicate a row.
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert

from domain.activity import Activity, ActivityType
from domain.checkout import AbandonedCheckout, CheckoutStatus
from domain.events import EventSlug
from domain.query import CheckoutPage, CheckoutQuery
from domain.task import StaffTask, TaskStatus
from store.anonymise import ERASED, anonymised_snapshot
from store.attribution import attribute_recovery
from store.checkout_query import run_query
from store.email_limits import (
    address_key,
    address_state,
    forget_send,
    lock_address,
    record_send,
)
from store.group_commit import GroupCommitter
from store.migrate import upgrade_to_head
from store.outbox import append_event, erase_event_bodies
from store.rows import ENGINE_FIELDS, checkout_from_row, identity_columns, load_activities
from store.schema import activities, checkouts, link_clicks, sent_log, tasks

logger = logging.getLogger(__name__)

SCHEDULED_KEY = "scheduled"


class SendClaim(StrEnum):
    """What `claim_send` found for an idempotency key."""

    CLAIMED = "claimed"
    """Nobody sent this yet; the caller now owns the send."""
    ALREADY_SENT = "already_sent"
    IN_DOUBT = "in_doubt"
    """An earlier attempt claimed it and never confirmed: it may have reached the buyer."""


@dataclass(frozen=True)
class SendStart:
    """What `begin_send` found: the checkout as it is now, and the claim when one was made."""

    checkout: AbandonedCheckout | None
    claim: SendClaim | None
    """None when the checkout is missing, no longer abandoned, has no email address, or when
    one of the two fields below says why not."""
    suppressed: bool = False
    """The address unsubscribed."""
    capped_until: datetime | None = None
    """The frequency cap blocks the send until then (another checkout mailed the address)."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the CLI read while the worker writes; the busy timeout makes concurrent writers
    # from several processes wait their turn instead of failing. The timeout comes first: switching
    # a new database to WAL takes a lock too, and parts starting together would otherwise fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class SqlStore:
    """The durable, queryable record of checkouts, their activity entries, sends and tasks."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writes = GroupCommitter(engine)
        # Built once: a statement object used again skips SQLAlchemy's per-call construction
        # and cache-key work, which is most of what a small insert costs here.
        self._insert_checkout = self._insert_ignore(checkouts)
        self._insert_activity_row = self._insert_ignore(activities)
        self._insert_claim = self._insert_ignore(sent_log)
        self._insert_task = self._insert_ignore(tasks)

    @classmethod
    def from_url(cls, url: str) -> "SqlStore":
        if url.startswith("sqlite"):
            # A local file never drops a connection: no ping before each use.
            engine = create_async_engine(url)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(url, pool_pre_ping=True)
        return cls(engine)

    @property
    def engine(self) -> AsyncEngine:
        """For the store's companions (API keys, subscriptions, queries) that share its database."""
        return self._engine

    async def create_schema(self) -> None:
        """Bring the database to the newest schema (Alembic migrations); harmless when current."""
        await upgrade_to_head(self._engine)

    async def close(self) -> None:
        await self._writes.close()
        await self._engine.dispose()

    # --- checkouts ---------------------------------------------------------------------------

    async def save_reported(
        self,
        checkout: AbandonedCheckout,
        reported_at: datetime,
        *,
        holdout: bool = False,
        attribution_window: timedelta | None = None,
    ) -> datetime:
        """Record a newly reported checkout and its SCHEDULED entry, once.

        Returns the time of the first report, which is the SCHEDULED time for every later report
        of the same checkout.
        """
        checkout_id = checkout.id
        assert checkout_id is not None and checkout.created_date is not None

        async def write(conn: AsyncConnection) -> object:
            inserted = await conn.execute(
                self._insert_checkout,
                {
                    "id": checkout_id,
                    "checkout_id": checkout.checkout_id,
                    "cart_id": checkout.cart_id,
                    "status": CheckoutStatus.ABANDONED,
                    **identity_columns(checkout),
                    "created_date": checkout.created_date,
                    "updated_date": checkout.updated_date or reported_at,
                    "snapshot": _snapshot_json(checkout),
                    "holdout": holdout,
                    "attribution_window_seconds": (
                        int(attribution_window.total_seconds()) if attribution_window else None
                    ),
                },
            )
            await self._insert_activity(
                conn,
                checkout_id,
                SCHEDULED_KEY,
                Activity(type=ActivityType.SCHEDULED, created_date=reported_at),
            )
            if inserted.rowcount == 1:
                await append_event(
                    conn, checkout_id, EventSlug.CREATED, _entity(checkout), reported_at
                )
                return reported_at
            return await conn.scalar(
                select(activities.c.created_date).where(
                    activities.c.checkout_id == checkout_id, activities.c.key == SCHEDULED_KEY
                )
            )

        first = await self._writes.run(write)
        assert isinstance(first, datetime)
        return first

    async def update_snapshot(self, checkout: AbandonedCheckout, updated_at: datetime) -> bool:
        """Replace what the buyer will be shown, emitting `updated`.

        False, and no event, when the checkout is unknown, erased or recovered, or when the new
        snapshot is the same as the stored one (a repeated report of an unchanged cart).
        """
        checkout_id = checkout.id
        assert checkout_id is not None
        snapshot = _snapshot_json(checkout)

        return await self._change_abandoned(
            checkout_id,
            EventSlug.UPDATED,
            updated_at,
            {"snapshot": snapshot, **identity_columns(checkout), "updated_date": updated_at},
            checkouts.c.snapshot != snapshot,
        )

    async def mark_recovered(
        self, checkout_id: str, recovered_at: datetime, order_id: str | None
    ) -> bool:
        """Mark a checkout recovered, emitting `recovered`; False when it was already recovered
        (or is unknown or erased)."""

        return await self._change_abandoned(
            checkout_id,
            EventSlug.RECOVERED,
            recovered_at,
            {
                "status": CheckoutStatus.RECOVERED,
                "recovered_date": recovered_at,
                "order_id": order_id,
                "updated_date": recovered_at,
            },
            then=lambda conn: attribute_recovery(conn, checkout_id, recovered_at),
        )

    async def _change_abandoned(
        self,
        checkout_id: str,
        slug: EventSlug,
        at: datetime,
        values: dict[str, Any],
        *conditions: ColumnElement[bool],
        then: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    ) -> bool:
        """Update a checkout that is still abandoned (and not erased) and emit `slug` with it, in
        one transaction; False, and no event, when no row changed."""

        async def write(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                update(checkouts)
                .where(
                    checkouts.c.id == checkout_id,
                    checkouts.c.status == CheckoutStatus.ABANDONED,
                    checkouts.c.deleted_date.is_(None),
                    *conditions,
                )
                .values(**values)
            )
            if result.rowcount == 0:
                return False
            if then is not None:
                await then(conn)
            await self._append_current(conn, checkout_id, slug, at)
            return True

        return await self._writes.run(write)

    async def erase(self, checkout_id: str, at: datetime) -> bool:
        """Erase the buyer's personal data, keeping an anonymised row for the statistics.

        Emits `deleted` (with the bare id) and strips the bodies of the checkout's earlier events
        and the titles of its staff tasks, which may quote the buyer. False when the checkout is
        unknown or erased already.
        """

        async def write(conn: AsyncConnection) -> bool:
            row = (
                await conn.execute(
                    select(checkouts.c.snapshot).where(
                        checkouts.c.id == checkout_id, checkouts.c.deleted_date.is_(None)
                    )
                )
            ).first()
            if row is None:
                return False
            await conn.execute(
                update(checkouts)
                .where(checkouts.c.id == checkout_id)
                .values(
                    snapshot=anonymised_snapshot(row.snapshot),
                    buyer_email=None,
                    buyer_contact_id=None,
                    buyer_visitor_id=None,
                    buyer_member_id=None,
                    buyer_user_id=None,
                    deleted_date=at,
                    updated_date=at,
                )
            )
            await conn.execute(
                update(tasks).where(tasks.c.checkout_id == checkout_id).values(title=ERASED)
            )
            await erase_event_bodies(conn, checkout_id)
            await append_event(conn, checkout_id, EventSlug.DELETED, {"id": checkout_id}, at)
            return True

        return await self._writes.run(write)

    async def find_id(self, *, checkout_id: str | None, cart_id: str | None) -> str | None:
        """Our id of the checkout a shop knows by its checkoutId or cartId (checkoutId first)."""
        by_checkout = bool(checkout_id)
        column = checkouts.c.checkout_id if by_checkout else checkouts.c.cart_id
        value = checkout_id if by_checkout else cart_id
        if not value:
            return None
        query = (
            select(checkouts.c.id)
            .where(column == value, checkouts.c.deleted_date.is_(None))
            .order_by(checkouts.c.created_date.desc())
            .limit(1)
        )
        async with self._engine.connect() as conn:
            found = await conn.scalar(query)
        return str(found) if found is not None else None

    async def is_erased(self, checkout_id: str) -> bool:
        async with self._engine.connect() as conn:
            deleted = await conn.scalar(
                select(checkouts.c.deleted_date).where(checkouts.c.id == checkout_id)
            )
        return deleted is not None

    async def record_click(self, checkout_id: str, step: int | None, at: datetime) -> None:
        """A buyer followed a recovery link (for attribution)."""
        await self._execute(
            link_clicks.insert().values(checkout_id=checkout_id, step=step, clicked_date=at)
        )

    async def _append_current(
        self, conn: AsyncConnection, checkout_id: str, slug: EventSlug, at: datetime
    ) -> None:
        """An event carrying the checkout as it stands after this transaction's change."""
        current = await self._load(conn, checkout_id, with_activities=False)
        assert current is not None
        await append_event(conn, checkout_id, slug, _entity(current), at)

    async def get(
        self, checkout_id: str, *, with_activities: bool = True
    ) -> AbandonedCheckout | None:
        """The checkout as the API shows it, with its full activity list in order."""
        async with self._engine.connect() as conn:
            return await self._load(conn, checkout_id, with_activities=with_activities)

    async def query(self, query: CheckoutQuery) -> CheckoutPage:
        """One page of checkouts matching a checked query, each with its newest 20 activities."""
        async with self._engine.connect() as conn:
            return await run_query(conn, query)

    async def _load(
        self, conn: AsyncConnection, checkout_id: str, *, with_activities: bool
    ) -> AbandonedCheckout | None:
        row = (
            await conn.execute(
                select(checkouts).where(
                    checkouts.c.id == checkout_id, checkouts.c.deleted_date.is_(None)
                )
            )
        ).first()
        if row is None:
            return None
        entries = await load_activities(conn, [checkout_id]) if with_activities else {}
        return checkout_from_row(row, entries.get(checkout_id, []))

    # --- activity entries --------------------------------------------------------------------

    async def record_activity(self, checkout_id: str, key: str, entry: Activity) -> None:
        async def write(conn: AsyncConnection) -> None:
            await self._insert_activity(conn, checkout_id, key, entry)

        await self._writes.run(write)

    # --- the sent log: at most one email per idempotency key -----------------------------------

    async def begin_send(
        self,
        checkout_id: str,
        key: str,
        message_id: str,
        at: datetime,
        cap_window: timedelta = timedelta(0),
    ) -> SendStart:
        """Re-read the checkout and, if it may still be mailed, claim the send of `key`.

        Reading, the unsubscribe and frequency-cap checks and claiming share one transaction, so
        no recovery, unsubscribe or other checkout's send can slip in between them.
        """

        async def write(conn: AsyncConnection) -> SendStart:
            checkout = await self._load(conn, checkout_id, with_activities=False)
            if (
                checkout is None
                or checkout.status is not CheckoutStatus.ABANDONED
                or not checkout.buyer_info.email
            ):
                return SendStart(checkout, None)
            address = address_key(checkout.buyer_info.email)
            await lock_address(conn, address)
            state = await address_state(conn, address, checkout_id, at, cap_window)
            if state.suppressed:
                return SendStart(checkout, None, suppressed=True)
            if state.capped_until is not None:
                return SendStart(checkout, None, capped_until=state.capped_until)
            inserted = await conn.execute(
                self._insert_claim,
                {
                    "key": key,
                    "checkout_id": checkout_id,
                    "message_id": message_id,
                    "created_at": at,
                },
            )
            if inserted.rowcount == 1:
                await record_send(conn, key, address, checkout_id, at)
                return SendStart(checkout, SendClaim.CLAIMED)
            confirmed = await conn.scalar(
                select(activities.c.type).where(
                    activities.c.checkout_id == checkout_id, activities.c.key == key
                )
            )
            sent = confirmed == ActivityType.EMAIL_SENT
            return SendStart(checkout, SendClaim.ALREADY_SENT if sent else SendClaim.IN_DOUBT)

        return await self._writes.run(write)

    async def release_send(self, key: str) -> None:
        """Give a claim back after a send that certainly did not happen, so a retry may send."""

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(sent_log.delete().where(sent_log.c.key == key))
            await forget_send(conn, key)

        await self._writes.run(write)

    async def confirm_send(self, key: str, checkout_id: str, entry: Activity) -> None:
        """Confirm a claimed send: its EMAIL_SENT entry is the confirmation."""
        await self.record_activity(checkout_id, key, entry)

    # --- staff tasks ---------------------------------------------------------------------------

    async def create_task(self, key: str, task: StaffTask, entry: Activity) -> None:
        async def write(conn: AsyncConnection) -> None:
            await conn.execute(self._insert_task, {"key": key, **task.model_dump(exclude={"id"})})
            await self._insert_activity(conn, task.checkout_id, key, entry)

        await self._writes.run(write)

    async def list_tasks(self, status: TaskStatus | None = None) -> list[StaffTask]:
        query = select(tasks).order_by(tasks.c.due_date, tasks.c.id)
        if status is not None:
            query = query.where(tasks.c.status == status)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        # Columns and model fields share their names; the idempotency key stays internal.
        return [
            StaffTask.model_validate({k: v for k, v in row._mapping.items() if k != "key"})
            for row in rows
        ]

    # --- helpers -------------------------------------------------------------------------------

    def _insert_ignore(self, table: Any) -> Insert:
        dialect = self._engine.dialect.name
        if dialect == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        if dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        raise NotImplementedError(f"the store does not support the {dialect} dialect yet")

    async def _insert_activity(
        self, conn: AsyncConnection, checkout_id: str, key: str, entry: Activity
    ) -> None:
        await conn.execute(
            self._insert_activity_row,
            {
                "checkout_id": checkout_id,
                "key": key,
                "type": entry.type,
                "created_date": entry.created_date,
                "step": entry.step,
                "reason": entry.reason,
                "consent": entry.consent,
            },
        )

    async def _execute(self, statement: Any) -> int:
        async def write(conn: AsyncConnection) -> int:
            return int((await conn.execute(statement)).rowcount)

        return await self._writes.run(write)


def _snapshot_json(checkout: AbandonedCheckout) -> str:
    # The row's own columns hold the id, the dates, the status and the order; leaving them out
    # makes an unchanged cart give the same snapshot, so a repeated report changes nothing.
    return checkout.model_dump_json(by_alias=True, exclude_none=True, exclude=ENGINE_FIELDS)


def _entity(checkout: AbandonedCheckout) -> dict[str, Any]:
    """The checkout as events carry it: the API's shape without the activity list."""
    return checkout.model_copy(update={"activities": []}).to_json_dict()
