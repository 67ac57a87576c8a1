"""How well recovery works: the figures behind `checkout-recovery stats` and the dashboard.

Every figure is about one cohort: the checkouts abandoned (`createdDate`) within the window, erased
ones included (their anonymised row stays for exactly this). So the recovered count, the revenue,
the emails and the daily series all describe the same checkouts, and the recovery rate is the share
of that cohort that came back, whenever it did. Days are UTC days.
"""

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import Field
from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.activity import ActivityType
from domain.base import CamelModel
from domain.checkout import CheckoutStatus
from domain.feedback import FeedbackKind
from domain.shops import DEFAULT_SHOP
from store.schema import activities, checkouts, email_feedback
from store.sql import SqlStore
from store.variant_stats import VariantStats, variant_stats


class StepStats(CamelModel):
    """What one policy step did across the cohort (steps count from 1, as in activity entries)."""

    step: int
    emails_sent: int = 0
    emails_not_sent: dict[str, int] = Field(default_factory=dict)
    """By reason; a reason with details (`condition_failed:min_total`) counts under its name."""
    notifications_sent: int = 0
    tasks_created: int = 0
    recoveries_attributed: dict[str, int] = Field(default_factory=dict)
    """Recoveries this step touched last, by attribution (`link`, `assisted`)."""
    recovered_revenue: dict[str, Decimal] = Field(default_factory=dict)
    """Their totals per currency."""
    # What the relays reported later about this step's emails (store.feedback), each email
    # counted once per kind however many reports (providers) told of it.
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    bounce_rate: float | None = None
    """Hard bounces per email sent, rounded to 4 places (soft bounces are not in it); None
    without a send."""
    complaint_rate: float | None = None
    """Complaints per email sent, rounded to 4 places."""


class GroupStats(CamelModel):
    """Abandoned and recovered counts of one part of the cohort."""

    abandoned: int = 0
    recovered: int = 0

    @property
    def rate(self) -> float | None:
        return self.recovered / self.abandoned if self.abandoned else None


class DayStats(CamelModel):
    day: date
    abandoned: int
    recovered: int
    """Of the checkouts abandoned that day, how many have been recovered since."""


class Stats(CamelModel):
    since: datetime | None
    until: datetime | None
    abandoned: int
    recovered: int
    recovered_revenue: dict[str, Decimal]
    """Per currency code: totals are never converted, and amounts stay exact decimals."""
    emails_sent: int
    emails_not_sent: dict[str, int]
    steps: list[StepStats]
    organic_recoveries: int = 0
    """Recoveries no step touched (see attribution in the README)."""
    stopped: dict[str, int] = Field(default_factory=dict)
    """Checkouts still ABANDONED whose flows stopped, by stopReason (`buyer_purchased`: the buyer
    bought through another checkout; they are not counted as recovered)."""
    treated: GroupStats = Field(default_factory=GroupStats)
    holdout: GroupStats = Field(default_factory=GroupStats)
    """Checkouts in the policy's holdout group: they got no message."""
    daily: list[DayStats]
    """Every day from the first to the last of the window (or of the data), gaps as zeros."""
    variants: list[VariantStats] = Field(default_factory=list)
    """The A/B variants of email steps (store.variant_stats); empty when no step has any."""

    @property
    def recovery_rate(self) -> float | None:
        """The recovered share of the cohort; None when nothing was abandoned."""
        return self.recovered / self.abandoned if self.abandoned else None

    @property
    def lift(self) -> float | None:
        """Recovery rate of the messaged checkouts minus that of the holdout (in rate points);
        None without both groups."""
        treated, holdout = self.treated.rate, self.holdout.rate
        return treated - holdout if treated is not None and holdout is not None else None

    def to_json_dict(self) -> dict[str, Any]:
        """The document `stats --json` prints: camelCase, amounts as decimal strings, as in the
        API."""
        document = self.model_dump(mode="json", by_alias=True)
        for name, value in (("recoveryRate", self.recovery_rate), ("lift", self.lift)):
            document[name] = round(value, 4) if value is not None else None
        return document


async def checkout_stats(
    store_or_engine: SqlStore | AsyncEngine,
    since: datetime | None,
    until: datetime | None,
    *,
    shop_id: str = DEFAULT_SHOP,
) -> Stats:
    """The figures of `shop_id`'s checkouts abandoned in [since, until); either bound may be
    open."""
    engine = store_or_engine.engine if isinstance(store_or_engine, SqlStore) else store_or_engine
    cohort = _cohort(shop_id, since, until)
    async with engine.connect() as conn:
        daily = await _daily(conn, cohort)
        revenue = await _revenue(conn, cohort)
        steps = await _steps(conn, cohort)
        await _add_feedback(conn, cohort, steps)
        organic = await _attribute_to_steps(conn, cohort, steps)
        groups = await _groups(conn, cohort)
        stopped = await _stopped(conn, cohort)
        variants = await variant_stats(conn, cohort)
    not_sent: Counter[str] = Counter()
    for step in steps:
        not_sent.update(step.emails_not_sent)
    return Stats(
        since=since,
        until=until,
        abandoned=sum(d.abandoned for d in daily),
        recovered=sum(d.recovered for d in daily),
        recovered_revenue=revenue,
        emails_sent=sum(s.emails_sent for s in steps),
        emails_not_sent=dict(sorted(not_sent.items())),
        steps=steps,
        organic_recoveries=organic,
        stopped=stopped,
        treated=groups.get(False, GroupStats()),
        holdout=groups.get(True, GroupStats()),
        daily=_continuous(daily, since, until),
        variants=variants,
    )


def _cohort(shop_id: str, since: datetime | None, until: datetime | None) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = [checkouts.c.shop_id == shop_id]
    if since is not None:
        conditions.append(checkouts.c.created_date >= since)
    if until is not None:
        conditions.append(checkouts.c.created_date < until)
    return and_(*conditions)


def _is_recovered() -> ColumnElement[int]:
    return case((checkouts.c.status == CheckoutStatus.RECOVERED, 1), else_=0)


async def _daily(conn: AsyncConnection, cohort: ColumnElement[bool]) -> list[DayStats]:
    day = _utc_day(conn.dialect.name)
    rows = await conn.execute(
        select(day, func.count(), func.sum(_is_recovered()))
        .where(cohort)
        .group_by(day)
        .order_by(day)
    )
    # SQLite answers the day as text, PostgreSQL as a date.
    return [
        DayStats(day=date.fromisoformat(str(d)), abandoned=int(n), recovered=int(r or 0))
        for d, n, r in rows
    ]


def _utc_day(dialect: str) -> ColumnElement[Any]:
    created = checkouts.c.created_date
    if dialect == "postgresql":
        # A timestamptz's date depends on the session's zone; convert to UTC first.
        return func.date(func.timezone("UTC", created))
    # SQLite keeps naive UTC text (see UtcDateTime), so its date is already the UTC day.
    return func.date(created)


async def _revenue(conn: AsyncConnection, cohort: ColumnElement[bool]) -> dict[str, Decimal]:
    # The total lives in the JSON snapshot (kept through erasure). Summed here, not in SQL: SQLite
    # would sum decimal strings as floats and lose cents.
    query: Select[Any] = select(checkouts.c.snapshot).where(
        cohort, checkouts.c.status == CheckoutStatus.RECOVERED
    )
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for (snapshot,) in await conn.execute(query):
        data = json.loads(snapshot)
        totals[data["currency"]] += Decimal(data["totalPrice"]["amount"])
    return dict(sorted(totals.items()))


_STEP_TYPES = (
    ActivityType.EMAIL_SENT,
    ActivityType.EMAIL_NOT_SENT,
    ActivityType.NOTIFICATION_SENT,
    ActivityType.TASK_CREATED,
)


async def _steps(conn: AsyncConnection, cohort: ColumnElement[bool]) -> list[StepStats]:
    rows = await conn.execute(
        select(activities.c.step, activities.c.type, activities.c.reason, func.count())
        .join(checkouts, checkouts.c.id == activities.c.checkout_id)
        .where(cohort, activities.c.type.in_(_STEP_TYPES), activities.c.step.is_not(None))
        .group_by(activities.c.step, activities.c.type, activities.c.reason)
    )
    steps: dict[int, StepStats] = {}
    for step, kind, reason, count in rows:
        figures = steps.setdefault(step, StepStats(step=step))
        if kind == ActivityType.EMAIL_SENT:
            figures.emails_sent += count
        elif kind == ActivityType.NOTIFICATION_SENT:
            figures.notifications_sent += count
        elif kind == ActivityType.TASK_CREATED:
            figures.tasks_created += count
        else:
            name = (reason or "unknown").partition(":")[0]
            figures.emails_not_sent[name] = figures.emails_not_sent.get(name, 0) + count
    for figures in steps.values():
        figures.emails_not_sent = dict(sorted(figures.emails_not_sent.items()))
    return [steps[n] for n in sorted(steps)]


_FEEDBACK_COUNTS = {
    FeedbackKind.HARD_BOUNCE: "hard_bounces",
    FeedbackKind.SOFT_BOUNCE: "soft_bounces",
    FeedbackKind.COMPLAINT: "complaints",
}


async def _add_feedback(
    conn: AsyncConnection, cohort: ColumnElement[bool], steps: list[StepStats]
) -> None:
    """Each step's bounces and complaints, and their rates per email sent."""
    rows = await conn.execute(
        select(
            email_feedback.c.step,
            email_feedback.c.kind,
            func.count(func.distinct(email_feedback.c.checkout_id)),
        )
        .join(checkouts, checkouts.c.id == email_feedback.c.checkout_id)
        .where(cohort, email_feedback.c.step.is_not(None))
        .group_by(email_feedback.c.step, email_feedback.c.kind)
    )
    by_number = {figures.step: figures for figures in steps}
    for step, kind, count in rows:
        figures = by_number.get(step)
        counted = _FEEDBACK_COUNTS.get(kind)
        if figures is not None and counted is not None:
            setattr(figures, counted, int(count))
    for figures in steps:
        if figures.emails_sent:
            figures.bounce_rate = round(figures.hard_bounces / figures.emails_sent, 4)
            figures.complaint_rate = round(figures.complaints / figures.emails_sent, 4)


async def _attribute_to_steps(
    conn: AsyncConnection, cohort: ColumnElement[bool], steps: list[StepStats]
) -> int:
    """Add each attributed recovery to the step that touched the buyer last; return how many
    recoveries were organic."""
    by_number = {figures.step: figures for figures in steps}
    organic = 0
    rows = await conn.execute(
        select(
            checkouts.c.attribution,
            checkouts.c.attributed_step,
            checkouts.c.currency,
            checkouts.c.recovered_amount,
        ).where(cohort, checkouts.c.attribution.is_not(None))
    )
    for kind, step, currency, amount in rows:
        figures = by_number.get(step) if step is not None else None
        if figures is None:
            organic += 1
            continue
        figures.recoveries_attributed[kind] = figures.recoveries_attributed.get(kind, 0) + 1
        revenue = figures.recovered_revenue
        revenue[currency] = revenue.get(currency, Decimal(0)) + Decimal(amount)
    return organic


async def _groups(conn: AsyncConnection, cohort: ColumnElement[bool]) -> dict[bool, GroupStats]:
    rows = await conn.execute(
        select(checkouts.c.holdout, func.count(), func.sum(_is_recovered()))
        .where(cohort)
        .group_by(checkouts.c.holdout)
    )
    return {bool(h): GroupStats(abandoned=int(n), recovered=int(r or 0)) for h, n, r in rows}


async def _stopped(conn: AsyncConnection, cohort: ColumnElement[bool]) -> dict[str, int]:
    rows = await conn.execute(
        select(checkouts.c.stop_reason, func.count())
        .where(
            cohort,
            checkouts.c.status == CheckoutStatus.ABANDONED,
            checkouts.c.stop_reason.is_not(None),
        )
        .group_by(checkouts.c.stop_reason)
        .order_by(checkouts.c.stop_reason)
    )
    return {str(reason): int(n) for reason, n in rows}


def _continuous(
    days: list[DayStats], since: datetime | None, until: datetime | None
) -> list[DayStats]:
    """The series with a zero for every day without abandonments, so a chart's x axis is time."""
    found = {d.day: d for d in days}
    first = since.astimezone(UTC).date() if since else (days[0].day if days else None)
    # `until` is exclusive: a window ending at midnight does not show the day it ends on.
    last = (until - timedelta(microseconds=1)).astimezone(UTC).date() if until else None
    last = last or (days[-1].day if days else None)
    if first is None or last is None:
        return []
    return [
        found.get(day, DayStats(day=day, abandoned=0, recovered=0)) for day in _days(first, last)
    ]


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)
