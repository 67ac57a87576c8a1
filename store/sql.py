"""The store on SQLAlchemy's async engine: SQLite by default, any SQLAlchemy async URL in principle.

Every write that a retried activity can repeat is an insert-or-ignore on a unique key, so retries
never duplicate a row.

Shops: every checkout belongs to one (domain.shops). Its id is unique across shops, so the engine
(workers, the reconciler) reads and writes a checkout by its id alone; what a request reads names
the request's shop (`shop_id`), in the same statement, so another shop's checkout is not found.
A row made about a checkout (event, click, task, send) takes the checkout's shop.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, event, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert

from domain.activity import ActivityEntry, ActivityType
from domain.checkout import AbandonedCheckout, BuyerIdentity, CheckoutStatus, FlowState, StopReason
from domain.events import EventSlug
from domain.flow import (
    BUYER_PURCHASED_SIGNAL,
    CANCEL_SIGNAL,
    CHECKOUT_UPDATED_SIGNAL,
    RECOVERED_SIGNAL,
    UNSUBSCRIBED_SIGNAL,
    RecoveredSignal,
)
from domain.query import CheckoutPage, CheckoutQuery
from domain.sent_email import SentEmail
from domain.shops import DEFAULT_SHOP
from domain.task import StaffTask, TaskStatus
from store.anonymise import ERASED, anonymised_snapshot
from store.attribution import attribute_recovery
from store.checkout_query import run_query
from store.coalescing import Coalescer
from store.email_limits import (
    address_key,
    address_state,
    forget_send,
    lock_address,
    record_send,
)
from store.flow_commands import (
    DELETE_COMMAND,
    CommandQueue,
    FlowCommand,
    NewCommand,
    append_command,
    append_commands,
    discard_commands,
    signal_command,
)
from store.group_commit import GroupCommitter, WriteOp
from store.migrate import upgrade_to_head
from store.outbox import append_event, append_events, erase_event_bodies
from store.rows import (
    ENGINE_FIELDS,
    checkout_from_row,
    identity_columns,
    load_activities,
    open_checkout,
)
from store.schema import (
    activities,
    checkouts,
    link_clicks,
    sent_emails,
    sent_log,
    suppressions,
    tasks,
)
from store.sent_emails import copies_by_step, erase_copies, keep_copy, steps_with_copies

logger = logging.getLogger(__name__)
T = TypeVar("T")

SCHEDULED_KEY = "scheduled"
STOP_CHECKOUT = "stop_checkout"
"""The on_purchase value under which a recovery stops only its own checkout's flow."""


@dataclass(frozen=True)
class Recovery:
    """What `mark_recovered` did."""

    stopped: list[str]
    """The buyer's other open checkouts it stopped (on_purchase = stop_buyer)."""


@dataclass(frozen=True)
class Reported:
    """What `save_reported` found."""

    first_reported_at: datetime
    """When the checkout was first reported: the SCHEDULED time of every report of it."""
    new: bool
    """True when this report was the first (and wrote the flow's start)."""
    start: FlowCommand | None = None
    """The start command this report wrote, for the writer to deliver at once."""
    erased: bool = False
    """The checkout was reported before and its buyer's data erased since."""
    changed: bool = False
    """A repeated report whose cart differed: the snapshot was replaced and the flow is told."""
    current: AbandonedCheckout | None = None
    """A repeated report: the record as it stands after this one."""
    other_shop: bool = False
    """The report gave our id of another shop's checkout: nothing was written."""


class SendClaim(StrEnum):
    """What `check_send` or `begin_send` found for an idempotency key."""

    CLAIMED = "claimed"
    """Nobody sent this yet; the caller now owns the send."""
    UNCLAIMED = "unclaimed"
    """Nobody claimed it yet (`check_send` looks, it does not claim)."""
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
    suppressed_because: str | None = None
    """Why the address is suppressed in the checkout's shop (`unsubscribed`, `bounced`,
    `complained`); None: it is not."""
    capped_until: datetime | None = None
    """The frequency cap blocks the send until then (another checkout mailed the address)."""
    shop_id: str = DEFAULT_SHOP
    """The checkout's shop: whose sender, wording and links the email takes."""

    @property
    def suppressed(self) -> bool:
        return self.suppressed_because is not None


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

    def __init__(self, engine: AsyncEngine, *, keep_sent_emails: bool = True) -> None:
        self._engine = engine
        self._keep_sent_emails = keep_sent_emails
        """CHECKOUT_RECOVERY_KEEP_SENT_EMAILS: whether confirm_send keeps the copy it is given."""
        self._writes = GroupCommitter(engine)
        # Built once: a statement object used again skips SQLAlchemy's per-call construction
        # and cache-key work, which is most of what a small insert costs here.
        self._insert_checkouts_returning = self._insert_ignore(checkouts).returning(checkouts.c.id)
        self._reports: Coalescer[_Report, Reported] = Coalescer(self._write_report_batch)
        self._insert_activity_row = self._insert_ignore(activities)
        self._insert_claim = self._insert_ignore(sent_log)
        self._insert_task = self._insert_ignore(tasks)
        self._insert_suppression = self._insert_ignore(suppressions)
        self._insert_copy = self._insert_ignore(sent_emails)
        self.commands = CommandQueue(engine, self._writes)
        """The hand-off's outbox of commands for Temporal."""

    @property
    def keeps_sent_emails(self) -> bool:
        """Whether confirm_send keeps a copy of the email (CHECKOUT_RECOVERY_KEEP_SENT_EMAILS)."""
        return self._keep_sent_emails

    @classmethod
    def from_url(cls, url: str, *, keep_sent_emails: bool = True) -> "SqlStore":
        # A database error's text leaves out the statement's values (buyer emails, names, the
        # checkout JSON): it is logged, recorded in Temporal failures and traced.
        if url.startswith("sqlite"):
            # A local file never drops a connection: no ping before each use.
            engine = create_async_engine(url, hide_parameters=True)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(url, pool_pre_ping=True, hide_parameters=True)
        return cls(engine, keep_sent_emails=keep_sent_emails)

    @property
    def engine(self) -> AsyncEngine:
        """For the store's companions (API keys, subscriptions, queries) that share its database."""
        return self._engine

    async def create_schema(self) -> None:
        """Bring the database to the newest schema (Alembic migrations); harmless when current."""
        await upgrade_to_head(self._engine)

    async def close(self) -> None:
        await self._reports.close()
        await self._writes.close()
        await self._engine.dispose()

    # --- checkouts ---------------------------------------------------------------------------

    async def save_reported(
        self,
        checkout: AbandonedCheckout,
        reported_at: datetime,
        *,
        start: Callable[[], NewCommand] | None = None,
        holdout: bool = False,
        attribution_window: timedelta | None = None,
        on_purchase: str | None = None,
        shop_id: str = DEFAULT_SHOP,
    ) -> Reported:
        """Record a newly reported checkout, its SCHEDULED entry and its flow's start, once.

        `start` makes the command that starts the flow; it is asked for only when this report
        is the first (without it, none is written: tests that drive a flow themselves). A
        repeated report replaces the stored cart when it changed, in the same transaction.

        Reports arriving together are written together: one multi-row statement per table for
        all the new ones (see `_write_reports`), which is what makes ingest fast on SQLite,
        where each statement is a hop to the driver's thread.
        """
        assert checkout.id is not None and checkout.created_date is not None
        report = _Report(
            checkout, reported_at, start, holdout, attribution_window, on_purchase, shop_id
        )
        return await self._reports.run(report)

    async def _write_report_batch(self, reports: list["_Report"]) -> list[Reported]:
        async def write(conn: AsyncConnection) -> list[Reported]:
            return await self._write_reports(conn, reports)

        return await self._writes.run(write)

    async def _write_reports(
        self, conn: AsyncConnection, reports: list["_Report"]
    ) -> list[Reported]:
        # A checkout reported twice in one batch: the first is new, the second a repeat.
        firsts: dict[str, _Report] = {}
        for report in reports:
            firsts.setdefault(report.checkout_id, report)
        rows = [report.row() for report in firsts.values()]
        inserted = set((await conn.scalars(self._insert_checkouts_returning, rows)).all())
        new = [r for r in firsts.values() if r.checkout_id in inserted]
        if new:
            await conn.execute(
                self._insert_activity_row,
                [_activity_row(r.checkout_id, SCHEDULED_KEY, r.scheduled()) for r in new],
            )
            await append_events(
                conn,
                [
                    (r.checkout_id, EventSlug.CREATED, _entity(r.checkout), r.reported_at)
                    for r in new
                ],
            )
        wanted = [(r.checkout_id, r.make_start()) for r in new if r.make_start is not None]
        written = await append_commands(conn, wanted, mark_pending=False)
        starts = {command.checkout_id: command for command in written}
        results: list[Reported] = []
        for report in reports:
            if report.checkout_id in inserted and firsts[report.checkout_id] is report:
                results.append(
                    Reported(report.reported_at, new=True, start=starts.get(report.checkout_id))
                )
            else:
                results.append(await self._repeated_report(conn, report))
        return results

    async def _repeated_report(self, conn: AsyncConnection, report: "_Report") -> Reported:
        checkout_id = report.checkout_id
        earlier = (
            await conn.execute(
                select(activities.c.created_date, checkouts.c.deleted_date, checkouts.c.shop_id)
                .join(checkouts, checkouts.c.id == activities.c.checkout_id)
                .where(activities.c.checkout_id == checkout_id, activities.c.key == SCHEDULED_KEY)
            )
        ).one()
        if earlier.shop_id != report.shop_id:
            # Only a report giving our id (`_id`) can get here: derived ids differ per shop.
            return Reported(earlier.created_date, new=False, other_shop=True)
        if earlier.deleted_date is not None:
            return Reported(earlier.created_date, new=False, erased=True)
        # A repeated report: its cart, when changed, replaces the stored one (and reaches the
        # flow); either way the answer shows the record as it now stands.
        changed = await self._update_snapshot(conn, report.checkout, report.reported_at)
        current = await self._load(conn, checkout_id, with_activities=True)
        return Reported(earlier.created_date, new=False, changed=changed, current=current)

    async def update_snapshot(self, checkout: AbandonedCheckout, updated_at: datetime) -> bool:
        """Replace what the buyer will be shown, emitting `updated` and telling the flow.

        False, and nothing written, when the checkout is unknown, erased or recovered, or when
        the new snapshot is the same as the stored one (a repeated report of an unchanged cart).
        """

        async def write(conn: AsyncConnection) -> bool:
            return await self._update_snapshot(conn, checkout, updated_at)

        return await self._writes.run(write)

    async def _update_snapshot(
        self, conn: AsyncConnection, checkout: AbandonedCheckout, updated_at: datetime
    ) -> bool:
        checkout_id = checkout.id
        assert checkout_id is not None
        snapshot = _snapshot_json(checkout)
        result = await conn.execute(
            update(checkouts)
            .where(*_abandoned(checkout_id), checkouts.c.snapshot != snapshot)
            .values(snapshot=snapshot, **identity_columns(checkout), updated_date=updated_at)
        )
        if result.rowcount == 0:
            return False
        await self._append_current(conn, checkout_id, EventSlug.UPDATED, updated_at)
        # The flow ignores an update no newer than one it has seen (at-least-once delivery),
        # so the update carries the moment of this write.
        signal = checkout.model_copy(update={"updated_date": updated_at})
        await append_command(conn, checkout_id, signal_command(CHECKOUT_UPDATED_SIGNAL, signal))
        return True

    async def mark_recovered(
        self,
        checkout_id: str,
        recovered_at: datetime,
        order_id: str | None,
        *,
        signal_flow: bool = True,
    ) -> Recovery | None:
        """Mark a checkout recovered, emitting `recovered`, and tell its flow; None when it was
        already recovered (or is unknown or erased).

        Unless the checkout's policy said on_purchase = stop_checkout, every other open checkout
        of the same buyer is stopped in the same transaction (see `_stop_buyer`).
        `signal_flow=False`: the flow itself is recording its recovery.
        """

        async def write(conn: AsyncConnection) -> Recovery | None:
            stopped = await self._recover(conn, checkout_id, recovered_at, order_id, signal_flow)
            return Recovery(stopped) if stopped is not None else None

        return await self._writes.run(write)

    async def recover_buyer(
        self,
        buyer: BuyerIdentity,
        order_id: str | None,
        recovered_at: datetime,
        *,
        shop_id: str = DEFAULT_SHOP,
    ) -> tuple[str | None, list[str]]:
        """The shop knows the buyer's order but not the checkout it came from: the buyer's most
        recently updated open checkout in that shop is marked recovered with it, and every other
        open one there is stopped. Returns the recovered checkout's id (None when the buyer had
        no open checkout) and the ids stopped."""

        async def write(conn: AsyncConnection) -> tuple[str | None, list[str]]:
            matching = _same_buyer(buyer.email, buyer.contact_id, buyer.member_id, buyer.user_id)
            if matching is None:
                return None, []
            newest = await conn.scalar(
                select(checkouts.c.id)
                .where(checkouts.c.shop_id == shop_id, matching, *open_checkout())
                .order_by(checkouts.c.updated_date.desc(), checkouts.c.id)
                .limit(1)
            )
            if newest is None:
                return None, []
            stopped = await self._recover(
                conn, newest, recovered_at, order_id, True, always_stop=True
            )
            return str(newest), stopped or []

        return await self._writes.run(write)

    async def _recover(
        self,
        conn: AsyncConnection,
        checkout_id: str,
        recovered_at: datetime,
        order_id: str | None,
        signal_flow: bool,
        *,
        always_stop: bool = False,
    ) -> list[str] | None:
        """The recovery's write; None when nothing changed, else the buyer's checkouts stopped."""
        result = await conn.execute(
            update(checkouts)
            .where(*_abandoned(checkout_id))
            .values(
                status=CheckoutStatus.RECOVERED,
                recovered_date=recovered_at,
                order_id=order_id,
                updated_date=recovered_at,
                stop_reason=None,
                stopped_date=None,
            )
        )
        if result.rowcount == 0:
            return None
        await attribute_recovery(conn, checkout_id, recovered_at)
        await self._append_current(conn, checkout_id, EventSlug.RECOVERED, recovered_at)
        if signal_flow:
            signal = RecoveredSignal(order_id=order_id, recovered_at=recovered_at)
            await append_command(conn, checkout_id, signal_command(RECOVERED_SIGNAL, signal))
        return await self._stop_buyer(conn, checkout_id, recovered_at, always=always_stop)

    async def _stop_buyer(
        self, conn: AsyncConnection, recovered_id: str, at: datetime, *, always: bool
    ) -> list[str]:
        """Stop the other open checkouts of the buyer of `recovered_id` (same email, contactId,
        memberId or userId; a visitorId names a browser, not a person): each records
        stopReason buyer_purchased, emits `updated`, and its flow gets `buyer_purchased`."""
        row = (
            await conn.execute(
                select(
                    checkouts.c.buyer_email,
                    checkouts.c.buyer_contact_id,
                    checkouts.c.buyer_member_id,
                    checkouts.c.buyer_user_id,
                    checkouts.c.on_purchase,
                    checkouts.c.shop_id,
                ).where(checkouts.c.id == recovered_id)
            )
        ).one()
        if row.on_purchase == STOP_CHECKOUT and not always:
            return []
        matching = _same_buyer(
            row.buyer_email, row.buyer_contact_id, row.buyer_member_id, row.buyer_user_id
        )
        if matching is None:
            return []
        others = (
            await conn.scalars(
                select(checkouts.c.id).where(
                    checkouts.c.shop_id == row.shop_id,  # the buyer's other shops' checkouts go on
                    matching,
                    *open_checkout(),
                    checkouts.c.id != recovered_id,
                )
            )
        ).all()
        for other in others:
            await self._stop(conn, other, StopReason.BUYER_PURCHASED, BUYER_PURCHASED_SIGNAL, at)
        return [str(other) for other in others]

    async def stop(self, checkout_id: str, at: datetime) -> bool:
        """Cancel a checkout's flow without recovering it: stopReason cancelled, `updated`, and
        the flow's `cancel` signal. False when it was recovered, stopped or erased before."""

        async def write(conn: AsyncConnection) -> bool:
            return await self._stop(conn, checkout_id, StopReason.CANCELLED, CANCEL_SIGNAL, at)

        return await self._writes.run(write)

    async def close_without_flow(self, checkout_id: str, at: datetime) -> bool:
        """The reconciler found no flow for an open checkout whose policy window has passed:
        record stopReason window_elapsed (no flow to tell)."""

        async def write(conn: AsyncConnection) -> bool:
            return await self._stop(conn, checkout_id, StopReason.WINDOW_ELAPSED, None, at)

        return await self._writes.run(write)

    async def enqueue(self, checkout_id: str, command: NewCommand) -> None:
        """Write a command for a checkout's flow on its own (the reconciler's repairs)."""

        async def write(conn: AsyncConnection) -> None:
            await append_command(conn, checkout_id, command)

        await self._writes.run(write)

    async def _stop(
        self,
        conn: AsyncConnection,
        checkout_id: str,
        reason: StopReason,
        signal: str | None,
        at: datetime,
    ) -> bool:
        result = await conn.execute(
            update(checkouts)
            .where(*_abandoned(checkout_id), checkouts.c.stop_reason.is_(None))
            .values(stop_reason=reason, stopped_date=at, updated_date=at)
        )
        if result.rowcount == 0:
            return False
        await self._append_current(conn, checkout_id, EventSlug.UPDATED, at)
        if signal is not None:
            await append_command(conn, checkout_id, signal_command(signal))
        return True

    async def unsubscribe(
        self, email: str, at: datetime, *, shop_id: str = DEFAULT_SHOP
    ) -> list[str]:
        """Suppress `email` for every checkout of `shop_id` (an unsubscribe is from one shop's
        sender) and tell each of its open flows there, in one transaction. Returns the ids of
        the checkouts whose flows are told."""
        address = address_key(email)

        async def write(conn: AsyncConnection) -> list[str]:
            await conn.execute(
                self._insert_suppression,
                {"shop_id": shop_id, "address_key": address, "created_date": at},
            )
            matching = _same_buyer(email, None, None, None)
            assert matching is not None
            open_there = (checkouts.c.shop_id == shop_id, matching, *open_checkout())
            flows = (await conn.scalars(select(checkouts.c.id).where(*open_there))).all()
            for flow in flows:
                await append_command(conn, flow, signal_command(UNSUBSCRIBED_SIGNAL))
            return [str(f) for f in flows]

        return await self._writes.run(write)

    async def run_write(self, op: WriteOp[T]) -> T:
        """A companion's write (store.feedback) in this store's write path: it shares the group
        commit and the retry-alone-on-failure of the store's own writes."""
        return await self._writes.run(op)

    async def suppress(
        self, conn: AsyncConnection, address: str, at: datetime, *, shop_id: str | None, reason: str
    ) -> bool:
        """Suppress an address key in `shop_id` (None: every shop) with `reason`, inside the
        caller's transaction; False when it was suppressed there already, which keeps its first
        reason. The unique index treats NULL shops as distinct, so every-shop rows are looked
        for first (the caller holds the address's lock, store.email_limits.lock_address)."""
        if shop_id is None:
            found = await conn.scalar(
                select(suppressions.c.seq).where(
                    suppressions.c.address_key == address, suppressions.c.shop_id.is_(None)
                )
            )
            if found is not None:
                return False
        row = {"shop_id": shop_id, "address_key": address, "created_date": at, "reason": reason}
        return bool((await conn.execute(self._insert_suppression, row)).rowcount == 1)

    async def erase(self, checkout_id: str, at: datetime) -> bool:
        """Erase the buyer's personal data, keeping an anonymised row for the statistics.

        Emits `deleted` (with the bare id), strips the bodies of the checkout's earlier events
        and the titles of its staff tasks, which may quote the buyer, and deletes the copies of
        the emails it was sent. False when the checkout is unknown or erased already.
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
            await erase_copies(conn, checkout_id)
            await append_event(conn, checkout_id, EventSlug.DELETED, {"id": checkout_id}, at)
            # Undelivered starts and signals carry the buyer's data and are moot now; deleting
            # the execution removes the history that holds it too.
            await discard_commands(conn, checkout_id)
            await append_command(conn, checkout_id, DELETE_COMMAND)
            return True

        return await self._writes.run(write)

    async def find_id(
        self, *, shop_id: str, checkout_id: str | None, cart_id: str | None
    ) -> str | None:
        """Our id of the checkout `shop_id` knows by its checkoutId or cartId (checkoutId first)."""
        by_checkout = bool(checkout_id)
        column = checkouts.c.checkout_id if by_checkout else checkouts.c.cart_id
        value = checkout_id if by_checkout else cart_id
        if not value:
            return None
        query = (
            select(checkouts.c.id)
            .where(
                checkouts.c.shop_id == shop_id, column == value, checkouts.c.deleted_date.is_(None)
            )
            .order_by(checkouts.c.created_date.desc())
            .limit(1)
        )
        async with self._engine.connect() as conn:
            found = await conn.scalar(query)
        return str(found) if found is not None else None

    async def is_in_shop(self, checkout_id: str, shop_id: str | None) -> bool:
        """The checkout, erased or not, is `shop_id`'s (always True for None: any shop)."""
        if shop_id is None:
            return True
        async with self._engine.connect() as conn:
            found: str | None = await conn.scalar(_shop_of(checkout_id))
        return found == shop_id

    async def get_with_shop(self, checkout_id: str) -> tuple[AbandonedCheckout, str] | None:
        """The checkout (without its activities) and its shop, by our id alone (the engine's
        read, such as a signed link's, which acts in the checkout's own shop)."""
        async with self._engine.connect() as conn:
            return await self._load_in(conn, checkout_id, False, None)

    async def is_erased(self, checkout_id: str, *, shop_id: str | None = None) -> bool:
        """With `shop_id`, only when the erased checkout was that shop's."""
        query = select(checkouts.c.deleted_date).where(checkouts.c.id == checkout_id)
        if shop_id is not None:
            query = query.where(checkouts.c.shop_id == shop_id)
        async with self._engine.connect() as conn:
            deleted = await conn.scalar(query)
        return deleted is not None

    async def record_click(self, checkout_id: str, step: int | None, at: datetime) -> None:
        """A buyer followed a recovery link (for attribution)."""
        await self._execute(
            link_clicks.insert().values(
                checkout_id=checkout_id,
                step=step,
                clicked_date=at,
                shop_id=_shop_of(checkout_id).scalar_subquery(),
            )
        )

    async def _append_current(
        self, conn: AsyncConnection, checkout_id: str, slug: EventSlug, at: datetime
    ) -> None:
        """An event carrying the checkout as it stands after this transaction's change."""
        current = await self._load(conn, checkout_id, with_activities=False)
        assert current is not None
        await append_event(conn, checkout_id, slug, _entity(current), at)

    async def get(
        self, checkout_id: str, *, with_activities: bool = True, shop_id: str | None = None
    ) -> AbandonedCheckout | None:
        """The checkout as the API shows it, with its full activity list in order; with
        `shop_id`, only when it is that shop's (a request's read). Without, by its id alone:
        the engine's read of a checkout it runs (a worker, the reconciler, a signed link)."""
        async with self._engine.connect() as conn:
            found = await self._load_in(conn, checkout_id, with_activities, shop_id)
        return found[0] if found is not None else None

    async def query(
        self, query: CheckoutQuery, *, shop_id: str = DEFAULT_SHOP, not_sent: str | None = None
    ) -> CheckoutPage:
        """One page of `shop_id`'s checkouts matching a checked query, each with its newest 20
        activities; `not_sent`: only those with an email not sent for this reason
        (store.checkout_query)."""
        async with self._engine.connect() as conn:
            return await run_query(conn, query, shop_id=shop_id, not_sent=not_sent)

    async def _load(
        self, conn: AsyncConnection, checkout_id: str, *, with_activities: bool
    ) -> AbandonedCheckout | None:
        found = await self._load_in(conn, checkout_id, with_activities, None)
        return found[0] if found is not None else None

    async def _load_in(
        self, conn: AsyncConnection, checkout_id: str, with_activities: bool, shop_id: str | None
    ) -> tuple[AbandonedCheckout, str] | None:
        """The checkout and its shop; None when erased, unknown, or not `shop_id`'s."""
        statement = select(checkouts).where(
            checkouts.c.id == checkout_id, checkouts.c.deleted_date.is_(None)
        )
        if shop_id is not None:
            statement = statement.where(checkouts.c.shop_id == shop_id)
        row = (await conn.execute(statement)).first()
        if row is None:
            return None
        entries = await load_activities(conn, [checkout_id]) if with_activities else {}
        return checkout_from_row(row, entries.get(checkout_id, [])), str(row.shop_id)

    # --- activity entries --------------------------------------------------------------------

    async def record_activity(self, checkout_id: str, key: str, entry: ActivityEntry) -> None:
        async def write(conn: AsyncConnection) -> None:
            await self._insert_activity(conn, checkout_id, key, entry)

        await self._writes.run(write)

    # --- the sent log: at most one email per idempotency key -----------------------------------

    async def check_send(
        self, checkout_id: str, key: str, at: datetime, cap_window: timedelta = timedelta(0)
    ) -> SendStart:
        """What `begin_send` would find now, claiming nothing: read before composing the email.

        The answer may be stale by the time the email is composed; `begin_send` decides."""

        async with self._engine.connect() as conn:
            return await self._send_state(conn, checkout_id, key, at, cap_window, claim=None)

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
            return await self._send_state(conn, checkout_id, key, at, cap_window, claim=message_id)

        return await self._writes.run(write)

    async def _send_state(
        self,
        conn: AsyncConnection,
        checkout_id: str,
        key: str,
        at: datetime,
        cap_window: timedelta,
        *,
        claim: str | None,
    ) -> SendStart:
        """The one rule for whether a step's email may go: with `claim` (its Message-ID), the
        send is claimed when it may; without, it is only looked at."""
        loaded = await self._load_in(conn, checkout_id, False, None)
        checkout, shop_id = loaded if loaded is not None else (None, DEFAULT_SHOP)
        if checkout is None or checkout.halted() is not None or not checkout.buyer_info.email:
            return SendStart(checkout, None, shop_id=shop_id)
        # The limits are the checkout's shop's (`shop_id`): the flow need not carry the shop.
        address = address_key(checkout.buyer_info.email)
        if claim is not None:
            await lock_address(conn, address)
        state = await address_state(conn, address, checkout_id, at, cap_window, shop_id=shop_id)
        if state.suppressed_because is not None:
            suppressed = state.suppressed_because
            return SendStart(checkout, None, suppressed_because=suppressed, shop_id=shop_id)
        if state.capped_until is not None:
            return SendStart(checkout, None, capped_until=state.capped_until, shop_id=shop_id)
        found = await self.step_claim(
            conn, checkout_id, key, at, claim=claim, confirmed_by=ActivityType.EMAIL_SENT
        )
        if found is SendClaim.CLAIMED:
            await record_send(conn, key, address, checkout_id, at, shop_id=shop_id)
        return SendStart(checkout, found, shop_id=shop_id)

    async def step_claim(
        self,
        conn: AsyncConnection,
        checkout_id: str,
        key: str,
        at: datetime,
        *,
        claim: str | None,
        confirmed_by: ActivityType,
    ) -> SendClaim:
        """The one rule for a step's claim in the sent log, for every channel: with `claim` (the
        message's id) the step is claimed, CLAIMED when this call did; without, it is looked at,
        UNCLAIMED when nobody has. A claim found is ALREADY_SENT once its `confirmed_by` entry
        exists, else IN_DOUBT (its sender died between the claim and the confirmation)."""
        if claim is not None:
            inserted = await conn.execute(
                self._insert_claim,
                {"key": key, "checkout_id": checkout_id, "message_id": claim, "created_at": at},
            )
            if inserted.rowcount == 1:
                return SendClaim.CLAIMED
        elif await conn.scalar(select(sent_log.c.key).where(sent_log.c.key == key)) is None:
            return SendClaim.UNCLAIMED
        confirmed = await conn.scalar(
            select(activities.c.type).where(
                activities.c.checkout_id == checkout_id, activities.c.key == key
            )
        )
        return SendClaim.ALREADY_SENT if confirmed == confirmed_by else SendClaim.IN_DOUBT

    async def release_send(self, key: str) -> None:
        """Give a claim back after a send that certainly did not happen, so a retry may send."""

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(sent_log.delete().where(sent_log.c.key == key))
            await forget_send(conn, key)

        await self._writes.run(write)

    async def confirm_send(
        self, key: str, checkout_id: str, entry: ActivityEntry, *, copy: SentEmail | None = None
    ) -> None:
        """Confirm a claimed send: its EMAIL_SENT entry is the confirmation. `copy`, the email as
        sent (activities.sent_copy), is kept with it in the same transaction, unless the store
        keeps no copies or the checkout was erased meanwhile."""
        kept = copy if self._keep_sent_emails else None

        async def write(conn: AsyncConnection) -> None:
            await self._insert_activity(conn, checkout_id, key, entry)
            if kept is not None:
                await keep_copy(
                    conn, self._insert_copy, key, checkout_id, copy=kept, at=entry.created_date
                )

        await self._writes.run(write)

    async def sent_emails(self, checkout_id: str, step: int | None = None) -> dict[int, SentEmail]:
        """The copies kept of a checkout's sent emails, by step (only `step`'s when given)."""
        async with self._engine.connect() as conn:
            return await copies_by_step(conn, checkout_id, step)

    async def steps_with_sent_emails(self, checkout_id: str) -> frozenset[int]:
        """The steps whose sent email has a copy kept, without reading the copies."""
        async with self._engine.connect() as conn:
            return await steps_with_copies(conn, checkout_id)

    # --- staff tasks ---------------------------------------------------------------------------

    async def create_task(self, key: str, task: StaffTask, entry: ActivityEntry) -> None:
        async def write(conn: AsyncConnection) -> None:
            shop_id = await conn.scalar(_shop_of(task.checkout_id))
            row = {"key": key, **task.model_dump(exclude={"id"}), "shop_id": shop_id}
            await conn.execute(self._insert_task, row)
            await self._insert_activity(conn, task.checkout_id, key, entry)

        await self._writes.run(write)

    async def list_tasks(
        self,
        status: TaskStatus | None = None,
        *,
        checkout_id: str | None = None,
        shop_id: str = DEFAULT_SHOP,
    ) -> list[StaffTask]:
        """`shop_id`'s tasks, soonest due first; `checkout_id`: one checkout's (by the
        tasks.checkout_id index)."""
        query = (
            select(*(c for c in tasks.c if c.name != "shop_id"))
            .where(tasks.c.shop_id == shop_id)
            .order_by(tasks.c.due_date, tasks.c.id)
        )
        if status is not None:
            query = query.where(tasks.c.status == status)
        if checkout_id is not None:
            query = query.where(tasks.c.checkout_id == checkout_id)
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
        self, conn: AsyncConnection, checkout_id: str, key: str, entry: ActivityEntry
    ) -> None:
        await conn.execute(self._insert_activity_row, _activity_row(checkout_id, key, entry))

    async def _execute(self, statement: Any) -> int:
        async def write(conn: AsyncConnection) -> int:
            return int((await conn.execute(statement)).rowcount)

        return await self._writes.run(write)


@dataclass(frozen=True)
class _Report:
    """One report waiting to be written with the others that arrived with it."""

    checkout: AbandonedCheckout
    reported_at: datetime
    make_start: Callable[[], NewCommand] | None
    holdout: bool
    attribution_window: timedelta | None
    on_purchase: str | None
    shop_id: str

    @property
    def checkout_id(self) -> str:
        assert self.checkout.id is not None
        return self.checkout.id

    def scheduled(self) -> ActivityEntry:
        return ActivityEntry(type=ActivityType.SCHEDULED, created_date=self.reported_at)

    def row(self) -> dict[str, Any]:
        checkout = self.checkout
        window = self.attribution_window
        return {
            "id": self.checkout_id,
            "shop_id": self.shop_id,
            "checkout_id": checkout.checkout_id,
            "cart_id": checkout.cart_id,
            "status": CheckoutStatus.ABANDONED,
            **identity_columns(checkout),
            "created_date": checkout.created_date,
            "updated_date": checkout.updated_date or self.reported_at,
            "snapshot": _snapshot_json(checkout),
            "holdout": self.holdout,
            "attribution_window_seconds": int(window.total_seconds()) if window else None,
            "on_purchase": self.on_purchase,
            "flow_state": FlowState.PENDING if self.make_start is not None else None,
        }


def _activity_row(checkout_id: str, key: str, entry: ActivityEntry) -> dict[str, Any]:
    return {
        "checkout_id": checkout_id,
        "key": key,
        "type": entry.type,
        "created_date": entry.created_date,
        "step": entry.step,
        "reason": entry.reason,
        "consent": entry.consent,
        "channel": entry.channel,
        "variant": entry.variant,
    }


def _shop_of(checkout_id: str) -> Select[Any]:
    """The shop of a checkout: rows made about a checkout take its shop."""
    return select(checkouts.c.shop_id).where(checkouts.c.id == checkout_id)


def _abandoned(checkout_id: str) -> tuple[ColumnElement[bool], ...]:
    return (
        checkouts.c.id == checkout_id,
        checkouts.c.status == CheckoutStatus.ABANDONED,
        checkouts.c.deleted_date.is_(None),
    )


def _same_buyer(
    email: str | None, contact_id: str | None, member_id: str | None, user_id: str | None
) -> ColumnElement[bool] | None:
    """Checkouts of the same person: any of the identities that name one (None: none given)."""
    same: list[ColumnElement[bool]] = []
    if email:
        same.append(func.lower(checkouts.c.buyer_email) == email.strip().lower())
    if contact_id:
        same.append(checkouts.c.buyer_contact_id == contact_id)
    if member_id:
        same.append(checkouts.c.buyer_member_id == member_id)
    if user_id:
        same.append(checkouts.c.buyer_user_id == user_id)
    return or_(*same) if same else None


def _snapshot_json(checkout: AbandonedCheckout) -> str:
    # The row's own columns hold the id, the dates, the status and the order; leaving them out
    # makes an unchanged cart give the same snapshot, so a repeated report changes nothing.
    return checkout.model_dump_json(by_alias=True, exclude_none=True, exclude=ENGINE_FIELDS)


def _entity(checkout: AbandonedCheckout) -> dict[str, Any]:
    """The checkout as events carry it: the API's shape without the activity list."""
    return checkout.model_copy(update={"activities": []}).to_json_dict()
