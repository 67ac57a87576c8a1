"""How a recovery happened, decided in the transaction that records it, and revenue per step.

link: the buyer followed a recovery link before buying; assisted: bought within the checkout's
attribution window after an email; organic: neither. The step is the one that touched the buyer
last: the clicked link's, else the last email's.
"""

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.activity import ActivityType
from domain.checkout import CheckoutStatus
from domain.shops import DEFAULT_SHOP
from store.schema import activities, checkouts, link_clicks
from telemetry import metrics

DEFAULT_WINDOW = timedelta(days=3)
"""For checkouts reported before the window was kept per checkout."""


async def attribute_recovery(conn: AsyncConnection, checkout_id: str, at: datetime) -> None:
    """Write the attribution of a recovery that this transaction has just recorded."""
    row = (
        await conn.execute(
            select(checkouts.c.attribution_window_seconds, checkouts.c.snapshot).where(
                checkouts.c.id == checkout_id
            )
        )
    ).one()
    window = (
        timedelta(seconds=row.attribution_window_seconds)
        if row.attribution_window_seconds is not None
        else DEFAULT_WINDOW
    )
    clicked = (
        await conn.execute(
            select(link_clicks.c.step)
            .where(link_clicks.c.checkout_id == checkout_id, link_clicks.c.clicked_date <= at)
            .order_by(link_clicks.c.clicked_date.desc(), link_clicks.c.seq.desc())
            .limit(1)
        )
    ).first()
    if clicked is not None:
        kind, step = "link", clicked.step
    else:
        emailed = (
            await conn.execute(
                select(activities.c.step)
                .where(
                    activities.c.checkout_id == checkout_id,
                    activities.c.type == ActivityType.EMAIL_SENT,
                    activities.c.created_date <= at,
                    activities.c.created_date >= at - window,
                )
                .order_by(activities.c.created_date.desc(), activities.c.seq.desc())
                .limit(1)
            )
        ).first()
        kind, step = ("assisted", emailed.step) if emailed is not None else ("organic", None)
    snapshot: dict[str, Any] = json.loads(row.snapshot)
    await conn.execute(
        update(checkouts)
        .where(checkouts.c.id == checkout_id)
        .values(
            attribution=kind,
            attributed_step=step,
            recovered_amount=snapshot["totalPrice"]["amount"],
            currency=snapshot["currency"],
        )
    )
    # Counted in the transaction: a group commit that runs this write again after a
    # neighbour's failure (store.group_commit) counts it twice, which is rare and harmless.
    metrics.recovery_recorded(kind)


@dataclass(frozen=True)
class StepRevenue:
    step: int | None
    """None for organic recoveries, which no step touched."""
    attribution: str
    currency: str
    recoveries: int
    revenue: Decimal


async def revenue_by_step(
    engine: AsyncEngine,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    shop_id: str = DEFAULT_SHOP,
) -> list[StepRevenue]:
    """`shop_id`'s recovered revenue per step and attribution (per currency: totals are never
    converted)."""
    query = select(
        checkouts.c.attributed_step,
        checkouts.c.attribution,
        checkouts.c.currency,
        checkouts.c.recovered_amount,
    ).where(
        checkouts.c.shop_id == shop_id,
        checkouts.c.status == CheckoutStatus.RECOVERED,
        checkouts.c.attribution.is_not(None),
    )
    if since is not None:
        query = query.where(checkouts.c.recovered_date >= since)
    if until is not None:
        query = query.where(checkouts.c.recovered_date < until)
    # Amounts are decimal strings; summing them here keeps every cent exact on both databases.
    totals: dict[tuple[int | None, str, str], list[Decimal]] = defaultdict(list)
    async with engine.connect() as conn:
        for row in await conn.execute(query):
            group = (row.attributed_step, row.attribution, row.currency)
            totals[group].append(Decimal(row.recovered_amount))
    return [
        StepRevenue(step, kind, currency, len(amounts), sum(amounts, Decimal(0)))
        for (step, kind, currency), amounts in sorted(
            totals.items(), key=lambda item: (item[0][0] is None, item[0][0] or 0, item[0][1:])
        )
    ]
