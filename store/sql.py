"""The store on SQLAlchemy's async engine: SQLite by default, any SQLAlchemy async URL in principle.

Every write that a retried activity can repeat is an insert-or-ignore on a unique key, so retries
never duplicate a row.
"""

import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert

from domain.activity import Activity, ActivityType
from domain.checkout import AbandonedCheckout, CheckoutStatus
from domain.task import StaffTask, TaskStatus
from store.schema import activities, checkouts, metadata, sent_log, tasks

logger = logging.getLogger(__name__)

SCHEDULED_KEY = "scheduled"


class SendClaim(StrEnum):
    """What `claim_send` found for an idempotency key."""

    CLAIMED = "claimed"
    """Nobody sent this yet; the caller now owns the send."""
    ALREADY_SENT = "already_sent"
    IN_DOUBT = "in_doubt"
    """An earlier attempt claimed it and never confirmed: it may have reached the buyer."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the CLI read while the worker writes; the busy timeout makes concurrent writers
    # from several processes wait their turn instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class SqlStore:
    """The durable, queryable record of checkouts, their activity entries, sends and tasks."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    def from_url(cls, url: str) -> "SqlStore":
        engine = create_async_engine(url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return cls(engine)

    async def create_schema(self) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def close(self) -> None:
        await self._engine.dispose()

    # --- checkouts ---------------------------------------------------------------------------

    async def save_reported(self, checkout: AbandonedCheckout, reported_at: datetime) -> datetime:
        """Record a newly reported checkout and its SCHEDULED entry, once.

        Returns the time of the first report, which is the SCHEDULED time for every later report
        of the same checkout.
        """
        assert checkout.id is not None and checkout.created_date is not None
        async with self._engine.begin() as conn:
            await conn.execute(
                self._insert_ignore(checkouts).values(
                    id=checkout.id,
                    checkout_id=checkout.checkout_id,
                    cart_id=checkout.cart_id,
                    status=CheckoutStatus.ABANDONED,
                    buyer_email=checkout.buyer_info.email,
                    created_date=checkout.created_date,
                    updated_date=checkout.updated_date or reported_at,
                    snapshot=_snapshot_json(checkout),
                )
            )
            await self._insert_activity(
                conn,
                checkout.id,
                SCHEDULED_KEY,
                Activity(type=ActivityType.SCHEDULED, created_date=reported_at),
            )
            first = await conn.scalar(
                select(activities.c.created_date).where(
                    activities.c.checkout_id == checkout.id, activities.c.key == SCHEDULED_KEY
                )
            )
        assert isinstance(first, datetime)
        return first

    async def update_snapshot(self, checkout: AbandonedCheckout, updated_at: datetime) -> bool:
        """Replace what the buyer will be shown; False if the checkout is unknown or recovered."""
        result = await self._execute(
            update(checkouts)
            .where(checkouts.c.id == checkout.id, checkouts.c.status == CheckoutStatus.ABANDONED)
            .values(
                snapshot=_snapshot_json(checkout),
                buyer_email=checkout.buyer_info.email,
                updated_date=updated_at,
            )
        )
        return result > 0

    async def mark_recovered(
        self, checkout_id: str, recovered_at: datetime, order_id: str | None
    ) -> bool:
        """Mark a checkout recovered; False when it was already recovered (or is unknown)."""
        result = await self._execute(
            update(checkouts)
            .where(checkouts.c.id == checkout_id, checkouts.c.status == CheckoutStatus.ABANDONED)
            .values(
                status=CheckoutStatus.RECOVERED,
                recovered_date=recovered_at,
                order_id=order_id,
                updated_date=recovered_at,
            )
        )
        return result > 0

    async def get(
        self, checkout_id: str, *, with_activities: bool = True
    ) -> AbandonedCheckout | None:
        """The checkout as the API shows it, with its full activity list in order."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(checkouts).where(checkouts.c.id == checkout_id))
            ).first()
            if row is None:
                return None
            entries = []
            if with_activities:
                entries = list(
                    (
                        await conn.execute(
                            select(activities)
                            .where(activities.c.checkout_id == checkout_id)
                            .order_by(activities.c.created_date, activities.c.seq)
                        )
                    ).all()
                )
        snapshot = AbandonedCheckout.model_validate_json(row.snapshot)
        return snapshot.model_copy(
            update={
                "status": CheckoutStatus(row.status),
                "checkout_recovered_date": row.recovered_date,
                "order_id": row.order_id,
                "updated_date": row.updated_date,
                "activities": [
                    Activity(type=e.type, created_date=e.created_date, step=e.step, reason=e.reason)
                    for e in entries
                ],
            }
        )

    async def status_of(self, checkout_id: str) -> CheckoutStatus | None:
        async with self._engine.connect() as conn:
            value = await conn.scalar(
                select(checkouts.c.status).where(checkouts.c.id == checkout_id)
            )
        return None if value is None else CheckoutStatus(value)

    # --- activity entries --------------------------------------------------------------------

    async def record_activity(self, checkout_id: str, key: str, entry: Activity) -> None:
        async with self._engine.begin() as conn:
            await self._insert_activity(conn, checkout_id, key, entry)

    # --- the sent log: at most one email per idempotency key -----------------------------------

    async def claim_send(
        self, key: str, checkout_id: str, message_id: str, at: datetime
    ) -> SendClaim:
        async with self._engine.begin() as conn:
            inserted = await conn.execute(
                self._insert_ignore(sent_log).values(
                    key=key,
                    checkout_id=checkout_id,
                    message_id=message_id,
                    state="sending",
                    created_at=at,
                )
            )
            if inserted.rowcount == 1:
                return SendClaim.CLAIMED
            state = await conn.scalar(select(sent_log.c.state).where(sent_log.c.key == key))
        return SendClaim.ALREADY_SENT if state == "sent" else SendClaim.IN_DOUBT

    async def release_send(self, key: str) -> None:
        """Give a claim back after a send that certainly did not happen, so a retry may send."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sent_log.delete().where(sent_log.c.key == key, sent_log.c.state == "sending")
            )

    async def confirm_send(self, key: str, checkout_id: str, entry: Activity) -> None:
        """Mark the email sent and record its entry in one transaction."""
        async with self._engine.begin() as conn:
            await conn.execute(update(sent_log).where(sent_log.c.key == key).values(state="sent"))
            await self._insert_activity(conn, checkout_id, key, entry)

    # --- staff tasks ---------------------------------------------------------------------------

    async def create_task(self, key: str, task: StaffTask, entry: Activity) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                self._insert_ignore(tasks).values(key=key, **task.model_dump(exclude={"id"}))
            )
            await self._insert_activity(conn, task.checkout_id, key, entry)

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
            self._insert_ignore(activities).values(
                checkout_id=checkout_id,
                key=key,
                type=entry.type,
                created_date=entry.created_date,
                step=entry.step,
                reason=entry.reason,
            )
        )

    async def _execute(self, statement: Any) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount)


def _snapshot_json(checkout: AbandonedCheckout) -> str:
    return checkout.model_dump_json(
        by_alias=True,
        exclude_none=True,
        exclude={"status", "checkout_recovered_date", "order_id", "activities"},
    )
