"""`checkout-recovery stats`: how well recovery works, as tables for people or one JSON document."""

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.support import (
    BadInputError,
    ShopOption,
    print_json,
    require_shop,
    run_command,
    settings_or_fail,
)
from domain.durations import parse_moment
from domain.shops import DEFAULT_SHOP
from store.stats import Stats, StepStats, checkout_stats
from store.variant_stats import VariantStats
from workers.resources import open_store

_BOUND_HELP = "a duration back from now (7d, 12h), an ISO date (UTC) or an ISO date-time"


def stats(
    since: Annotated[
        str | None,
        typer.Option("--since", help=f"Checkouts abandoned from then on: {_BOUND_HELP}."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help=f"Checkouts abandoned before then: {_BOUND_HELP}.")
    ] = None,
    shop: ShopOption = DEFAULT_SHOP,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """The shop's abandoned, recovered, recovery rate, recovered revenue, and emails sent and not
    sent (by reason), per step, for the checkouts abandoned in the window."""
    now = datetime.now(UTC)
    start = _bound("--since", since, now)
    end = _bound("--until", until, now)
    settings = settings_or_fail()

    async def run() -> Stats:
        async with open_store(settings) as store:
            return await checkout_stats(store, start, end, shop_id=await require_shop(store, shop))

    figures = run_command(run())
    if as_json:
        print_json(figures.to_json_dict())
    else:
        _print_tables(figures)


def _bound(option: str, text: str | None, now: datetime) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_moment(text, now)
    except (ValueError, OverflowError) as err:  # OverflowError: a date before year 1
        raise BadInputError(f"{option}: {err}") from None


def _print_tables(figures: Stats) -> None:
    console = Console()
    console.print(
        f"Checkouts abandoned from {_moment(figures.since, 'the first')} "
        f"to {_moment(figures.until, 'now')}",
        style="bold",
    )
    summary = Table(show_header=False)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    rate = figures.recovery_rate
    summary.add_row("abandoned", str(figures.abandoned))
    summary.add_row("recovered", str(figures.recovered))
    summary.add_row("recovery rate", f"{rate:.1%}" if rate is not None else "-")
    if not figures.recovered_revenue:
        summary.add_row("recovered revenue", "-")
    for currency, amount in figures.recovered_revenue.items():
        summary.add_row(f"recovered revenue {currency}", str(amount))
    if figures.holdout.abandoned:
        holdout_rate, lift = figures.holdout.rate, figures.lift
        summary.add_row("holdout (no messages)", f"{figures.holdout.abandoned} abandoned")
        summary.add_row("holdout recovery rate", f"{holdout_rate:.1%}" if holdout_rate else "0%")
        summary.add_row("lift", f"{lift * 100:+.1f} points" if lift is not None else "-")
    summary.add_row("organic recoveries", str(figures.organic_recoveries))
    for reason, count in figures.stopped.items():
        summary.add_row(f"stopped: {reason}", str(count))
    summary.add_row("emails sent", str(figures.emails_sent))
    for reason, count in figures.emails_not_sent.items():
        summary.add_row(f"emails not sent: {reason}", str(count))
    console.print(summary)
    if not figures.steps:
        console.print("No step has run for these checkouts yet.")
        return
    steps = Table(title="Per step")
    headings = ("step", "emails sent", "emails not sent", "notifications", "tasks", "recovered")
    for heading in (*headings, "revenue"):
        steps.add_column(heading, justify="right" if heading in headings[:1] else "left")
    for step in figures.steps:
        not_sent = ", ".join(f"{reason} {n}" for reason, n in step.emails_not_sent.items())
        steps.add_row(
            str(step.step),
            str(step.emails_sent),
            not_sent or "-",
            str(step.notifications_sent),
            str(step.tasks_created),
            ", ".join(f"{kind} {n}" for kind, n in step.recoveries_attributed.items()) or "-",
            ", ".join(f"{amount} {cur}" for cur, amount in step.recovered_revenue.items()) or "-",
        )
    console.print(steps)
    if any(step.emails_sent for step in figures.steps):
        console.print(_deliverability_table(figures.steps))
    if figures.variants:
        console.print(_variants_table(figures.variants))


def _variants_table(variants: list[VariantStats]) -> Table:
    """The A/B variants: rates with their 95% intervals, and each variant after a step's first
    against that first (store.variant_stats)."""
    table = Table(title="Variants (recovery rate with its 95% interval)")
    headings = ("step", "variant", "sends", "clicks", "recovered", "revenue", "recovery rate")
    for heading in (*headings, "vs first"):
        table.add_column(heading, justify="right" if heading in headings[2:5] else "left")
    for found in variants:
        revenue = ", ".join(f"{amount} {cur}" for cur, amount in found.recovered_revenue.items())
        versus = "-"
        if found.difference is not None:
            assert found.difference_low is not None and found.difference_high is not None
            versus = (
                f"{found.difference * 100:+.1f} points "
                f"({found.difference_low * 100:+.1f} to {found.difference_high * 100:+.1f}) "
                f"vs {found.compared_with}"
            )
        table.add_row(
            str(found.step),
            found.variant,
            str(found.sends),
            str(found.clicks),
            str(found.recoveries),
            revenue or "-",
            f"{_percent(found.recovery_rate)} "
            f"({_percent(found.recovery_rate_low)}-{_percent(found.recovery_rate_high)})",
            versus,
        )
    return table


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


def _deliverability_table(steps: list[StepStats]) -> Table:
    """What the relays reported later about each step's emails (store.feedback)."""
    table = Table(title="Deliverability per step (bounces and complaints the relays reported)")
    headings = ("step", "sent", "hard bounces", "bounce rate", "complaints", "complaint rate")
    for heading in (*headings, "soft bounces"):
        table.add_column(heading, justify="right")
    for step in steps:
        if not step.emails_sent:
            continue
        table.add_row(
            str(step.step),
            str(step.emails_sent),
            str(step.hard_bounces),
            _rate(step.bounce_rate),
            str(step.complaints),
            _rate(step.complaint_rate),
            str(step.soft_bounces),
        )
    return table


def _rate(share: float | None) -> str:
    # Two places: complaint rates that matter to a mailbox provider are tenths of a percent.
    return "-" if share is None else f"{share:.2%}"


def _moment(value: datetime | None, open_end: str) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else open_end
