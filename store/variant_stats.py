"""How each A/B variant of an email step did: the "Variants" figures of the stats.

Per step and variant, over the stats' cohort (store.stats: the checkouts abandoned in the window):
sends (EMAIL_SENT entries carrying that variant), clicks (those checkouts with a followed link of
that step), recoveries (those recovered at or after that send, however they came back), their
recovered totals per currency, and the recovery rate (recoveries / sends) with its 95% interval.
Each variant after a step's first also gets its difference in recovery rate from the first, with
the interval of that difference (domain.proportions).

The store does not know the policy's order of a step's variants (the entry names the variant
only), so variants are listed by name and the first by name is the baseline.
"""

from collections import defaultdict
from decimal import Decimal

from pydantic import Field
from sqlalchemy import ColumnElement, and_, exists, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.activity import ActivityType
from domain.base import CamelModel
from domain.checkout import CheckoutStatus
from domain.proportions import difference_interval, wilson_interval
from store.schema import activities, checkouts, link_clicks

_DIGITS = 4
"""Rates and interval ends are shares rounded to 4 places (0.1234 = 12.34%), as stats' rates."""


class VariantStats(CamelModel):
    step: int
    variant: str
    sends: int = 0
    clicks: int = 0
    recoveries: int = 0
    recovered_revenue: dict[str, Decimal] = Field(default_factory=dict)
    """Per currency code, exact: totals are never converted."""
    recovery_rate: float | None = None
    recovery_rate_low: float | None = None
    recovery_rate_high: float | None = None
    """The 95% interval of the rate (Wilson score)."""
    compared_with: str | None = None
    """The step's first variant, for the difference below; None on the first itself."""
    difference: float | None = None
    """This variant's recovery rate minus the first's (a share: 0.05 is 5 points)."""
    difference_low: float | None = None
    difference_high: float | None = None
    """The 95% interval of the difference (Newcombe's hybrid score); excluding 0, the variants
    differ at the 5% level."""


async def variant_stats(conn: AsyncConnection, cohort: ColumnElement[bool]) -> list[VariantStats]:
    """The figures of every step and variant that sent to the `cohort`'s checkouts, by step
    and then variant name."""
    clicked = exists().where(
        link_clicks.c.checkout_id == activities.c.checkout_id,
        link_clicks.c.step == activities.c.step,
    )
    # One row per variant send: the cohort's checkouts, their entries by the (checkout, created)
    # index, the clicks by theirs. Amounts are summed here, not in SQL: SQLite would sum the
    # decimal strings as floats and lose cents.
    rows = await conn.execute(
        select(
            activities.c.step,
            activities.c.variant,
            clicked.label("clicked"),
            and_(
                checkouts.c.status == CheckoutStatus.RECOVERED,
                checkouts.c.recovered_date >= activities.c.created_date,
            ).label("recovered"),
            checkouts.c.currency,
            checkouts.c.recovered_amount,
        )
        .join(checkouts, checkouts.c.id == activities.c.checkout_id)
        .where(
            cohort,
            activities.c.type == ActivityType.EMAIL_SENT,
            activities.c.variant.is_not(None),
            activities.c.step.is_not(None),
        )
    )
    figures: dict[tuple[int, str], VariantStats] = {}
    revenue: dict[tuple[int, str], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for step, variant, was_clicked, recovered, currency, amount in rows:
        found = figures.setdefault((step, variant), VariantStats(step=step, variant=variant))
        found.sends += 1
        found.clicks += int(bool(was_clicked))
        if recovered:
            found.recoveries += 1
            if currency is not None and amount is not None:
                revenue[step, variant][currency] += Decimal(amount)
    ordered = [figures[key] for key in sorted(figures)]
    baselines: dict[int, VariantStats] = {}
    for found in ordered:
        found.recovered_revenue = dict(sorted(revenue[found.step, found.variant].items()))
        _with_rates(found, baselines.setdefault(found.step, found))
    return ordered


def _with_rates(found: VariantStats, first: VariantStats) -> None:
    rate = wilson_interval(found.recoveries, found.sends)
    assert rate is not None  # every variant listed has sent
    found.recovery_rate = _share(found.recoveries / found.sends)
    found.recovery_rate_low, found.recovery_rate_high = _share(rate.low), _share(rate.high)
    if found is first:
        return
    found.compared_with = first.variant
    found.difference = _share(found.recoveries / found.sends - first.recoveries / first.sends)
    gap = difference_interval(found.recoveries, found.sends, first.recoveries, first.sends)
    assert gap is not None
    found.difference_low, found.difference_high = _share(gap.low), _share(gap.high)


def _share(value: float) -> float:
    return round(value, _DIGITS)
