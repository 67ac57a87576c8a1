"""What a relay's later report about a sent email does: a bounce or a complaint.

Each report is written once (relays retry their webhooks: the same provider, kind, Message-ID,
address and moment is a retry, not a second bounce) in the store's write path, and in the same
transaction:

- an `email_feedback` row, with the checkout, step and shop of our send when the Message-ID is
  one of ours (sent_log), and the address's key, never the address;
- a hard bounce suppresses the address in every shop (an address that does not exist is not
  tried again by each shop); a complaint suppresses it in the shop whose email it was, or, when
  the Message-ID is not ours, in every shop that has a checkout of that address (the complaint
  cannot say which shop's email it was, and each of them may be the sender); a soft bounce is
  only counted. An address suppressed already keeps its first reason;
- the send's EMAIL_SENT entry gets the outcome (`bounced`, `complained`) and its date;
- the open flows of the buyer's address in those shops get the `email_suppressed` signal
  (through the hand-off's outbox, as an unsubscribe tells them), so their next email step records
  EMAIL_NOT_SENT with that reason without trying.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.activity import ActivityType, NotSentReason
from domain.feedback import FeedbackKind, FeedbackReport, bare_message_id
from domain.flow import EMAIL_SUPPRESSED_SIGNAL, EmailSuppressedSignal
from store.email_limits import address_key, lock_address
from store.flow_commands import append_command, signal_command
from store.rows import open_checkout
from store.schema import activities, checkouts, email_feedback, sent_log
from store.sql import SqlStore, _same_buyer

SUPPRESSED_AS: dict[FeedbackKind, NotSentReason] = {
    FeedbackKind.HARD_BOUNCE: NotSentReason.BOUNCED,
    FeedbackKind.COMPLAINT: NotSentReason.COMPLAINED,
}
"""The one word for what a kind does: the suppression's reason, the entry's outcome, the signal's
reason and the EMAIL_NOT_SENT reason of the steps it stops. A soft bounce does none of these."""


@dataclass(frozen=True)
class OurSend:
    """The email a report's Message-ID names, when it is one of ours."""

    checkout_id: str
    key: str
    step: int | None
    """None when the send was claimed but never confirmed (no EMAIL_SENT entry)."""
    shop_id: str


@dataclass
class FeedbackRecorded:
    """What one webhook call's reports did."""

    received: int = 0
    recorded: int = 0
    """Reports seen for the first time (the others were a provider's retries)."""
    suppressed: int = 0
    """Suppressions made (an address already suppressed in a shop makes none there)."""
    flows_told: list[str] = field(default_factory=list)
    """The checkouts whose flows get the email_suppressed signal."""


class FeedbackStore:
    """A companion of SqlStore: its writes join the store's write path (store.group_commit)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def record_feedback(
        self, reports: Sequence[FeedbackReport], received_at: datetime
    ) -> FeedbackRecorded:
        """Record a webhook call's reports, in one transaction."""

        async def write(conn: AsyncConnection) -> FeedbackRecorded:
            done = FeedbackRecorded(received=len(reports))
            for report in reports:
                await self._record(conn, report, received_at, done)
            return done

        return await self._store.run_write(write)

    async def _record(
        self,
        conn: AsyncConnection,
        report: FeedbackReport,
        received_at: datetime,
        done: FeedbackRecorded,
    ) -> None:
        address = address_key(report.email)
        message_id = bare_message_id(report.message_id)
        # Two deliveries of one report (a retry racing the first) wait for each other here,
        # and for a send to the address under way.
        await lock_address(conn, address)
        if await _seen(conn, report, address, message_id):
            return
        send = await _our_send(conn, message_id) if message_id is not None else None
        await conn.execute(
            email_feedback.insert().values(
                provider=report.provider,
                kind=report.kind,
                address_key=address,
                message_id=message_id,
                checkout_id=send.checkout_id if send else None,
                step=send.step if send else None,
                shop_id=send.shop_id if send else None,
                occurred_date=report.occurred_at,
                received_date=received_at,
            )
        )
        done.recorded += 1
        reason = SUPPRESSED_AS.get(report.kind)
        if reason is None:
            return
        shops = await _where_suppressed(conn, report, send)
        for shop in shops:
            if await self._store.suppress(conn, address, received_at, shop_id=shop, reason=reason):
                done.suppressed += 1
        if send is not None:
            await conn.execute(
                update(activities)
                .where(
                    activities.c.checkout_id == send.checkout_id,
                    activities.c.key == send.key,
                    activities.c.type == ActivityType.EMAIL_SENT,
                    activities.c.outcome.is_(None),
                )
                .values(outcome=reason, outcome_date=report.occurred_at)
            )
        await _tell_flows(conn, report.email, shops, reason, done)


async def _where_suppressed(
    conn: AsyncConnection, report: FeedbackReport, send: OurSend | None
) -> list[str | None]:
    """The shops a hard bounce or complaint suppresses the address in (None: every shop)."""
    if report.kind is FeedbackKind.HARD_BOUNCE:
        return [None]
    if send is not None:
        return [send.shop_id]
    return [*await _shops_of_address(conn, report.email)]


async def _seen(
    conn: AsyncConnection, report: FeedbackReport, address: str, message_id: str | None
) -> bool:
    """Whether this report was recorded before: a provider's retry of its webhook."""
    found = await conn.scalar(
        select(email_feedback.c.seq)
        .where(
            email_feedback.c.provider == report.provider,
            email_feedback.c.kind == report.kind,
            email_feedback.c.address_key == address,
            email_feedback.c.message_id.is_not_distinct_from(message_id),
            email_feedback.c.occurred_date == report.occurred_at,
        )
        .limit(1)
    )
    return found is not None


async def _our_send(conn: AsyncConnection, message_id: str) -> OurSend | None:
    """The send with this Message-ID: sent_log keeps the header's value, angle brackets and all
    (activities.email_message.message_id_for)."""
    sent = and_(
        activities.c.checkout_id == sent_log.c.checkout_id,
        activities.c.key == sent_log.c.key,
        activities.c.type == ActivityType.EMAIL_SENT,
    )
    row = (
        await conn.execute(
            select(sent_log.c.checkout_id, sent_log.c.key, activities.c.step, checkouts.c.shop_id)
            .join(checkouts, checkouts.c.id == sent_log.c.checkout_id)
            .outerjoin(activities, sent)
            .where(sent_log.c.message_id == f"<{message_id}>")
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    return OurSend(str(row.checkout_id), str(row.key), row.step, str(row.shop_id))


async def _shops_of_address(conn: AsyncConnection, email: str) -> Sequence[str]:
    matching = _buyer(email)
    rows = await conn.scalars(select(checkouts.c.shop_id).where(matching).distinct())
    return sorted(str(shop) for shop in rows.all())


async def _tell_flows(
    conn: AsyncConnection,
    email: str,
    shops: list[str | None],
    reason: NotSentReason,
    done: FeedbackRecorded,
) -> None:
    """Signal the open flows of the address in `shops` (None among them: every shop)."""
    if not shops:
        return
    where = [_buyer(email), *open_checkout()]
    if None not in shops:
        where.append(checkouts.c.shop_id.in_(shops))
    flows = (await conn.scalars(select(checkouts.c.id).where(*where))).all()
    signal = signal_command(EMAIL_SUPPRESSED_SIGNAL, EmailSuppressedSignal(reason=reason))
    for flow in flows:
        await append_command(conn, flow, signal)
        if flow not in done.flows_told:
            done.flows_told.append(str(flow))


def _buyer(email: str) -> ColumnElement[bool]:
    # The same match as an unsubscribe's (store.sql): the address, case aside.
    matching = _same_buyer(email, None, None, None)
    assert matching is not None  # a report always names an address
    return matching
