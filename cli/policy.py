"""`checkout-recovery policy check FILE`: validate a policy and show the timeline it gives.

Nothing is sent and nothing is stored: the timeline comes from the same pure functions the
workflow uses (domain.schedule), applied to a sample checkout. Templates are the ones a worker
with the same settings renders: the shipped ones under the shop's own
(CHECKOUT_RECOVERY_TEMPLATES_DIR), in the default language CHECKOUT_RECOVERY_DEFAULT_LANGUAGE.
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from activities.template_check import sms_lengths
from cli.shops import checked_shop_policy
from cli.support import BadInputError, checked_policy, print_json, read_json, settings_or_fail
from domain.checkout import AbandonedCheckout
from domain.durations import format_duration
from domain.errors import InvalidInputError
from domain.policy import EmailStep, RecoveryPolicy
from domain.report import parse_report
from domain.schedule import PlannedStep, buyer_zone, in_holdout, is_stale, plan
from domain.sms import MAX_SEGMENTS, SmsLength
from domain.variants import assign_variant
from service.checkouts import derive_checkout_id
from workers.policy_files import load_policy
from workers.worker import template_renderer_for

policy_app = typer.Typer(help="Check recovery policies.", no_args_is_help=True)

SAMPLE_CHECKOUT: dict[str, Any] = {
    "checkoutId": "sample-checkout",
    "buyerInfo": {"visitorId": "sample-visitor", "email": "buyer@example.com"},
    "buyerLanguage": "en",
    "currency": "EUR",
    "totalPrice": {"amount": "100.00"},
    "checkoutUrl": "https://shop.example/checkout/sample",
}
"""Used when no --checkout is given: a visitor with a 100.00 EUR cart, no consent given."""


@policy_app.command("check")
def check(
    file: Annotated[
        str | None,
        typer.Argument(
            metavar="[FILE]", help="Policy TOML file or built-in name; with --shop, optional."
        ),
    ] = None,
    shop: Annotated[
        str | None,
        typer.Option(
            "--shop",
            help="Check with this shop's templates and language; without FILE, its own policy "
            "(or the deployment's when it has none).",
        ),
    ] = None,
    checkout: Annotated[
        Path | None,
        typer.Option("--checkout", help="A sample checkout (JSON, as reported to the API)."),
    ] = None,
    reported_at: Annotated[
        datetime | None,
        typer.Option("--reported-at", help="When the sample is reported (default: now, UTC)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Validate FILE (keys, values, templates) and print each step's due time, in UTC and in
    the buyer's zone, with the conditions that hold and what the step would do."""
    now = _aware(reported_at) if reported_at else datetime.now(UTC)
    sample = _sample(checkout)
    sample = sample.model_copy(
        update={"id": derive_checkout_id(sample), "created_date": sample.created_date or now}
    )
    # Every template of every step is rendered, in each of its languages, for this sample and
    # for edge cases (no names, no items, long values), and every file of the shop's own
    # templates is checked: a failure is exit 2 here rather than a buyer's lost email later.
    if shop is not None:
        renderer, policy = checked_shop_policy(shop, file, sample)
    elif file is None:
        raise BadInputError("give a policy FILE, or --shop SHOP")
    else:
        renderer = template_renderer_for(settings_or_fail())
        policy = checked_policy(file, lambda: load_policy(file, renderer, sample=sample))
    assert sample.created_date is not None
    steps = plan(policy, sample, sample.created_date, now)
    overrides = renderer.source.overrides
    facts = _facts(policy, sample, now) | {
        "templateOverrides": str(overrides) if overrides else None,
        "overriddenTemplates": renderer.source.override_files(),
    }
    variants = _variants(policy, sample)
    texts = sms_lengths(policy, renderer, sample)
    if as_json:
        print_json(_as_json(facts, steps, variants) | {"smsLengths": _sms_json(texts)})
    else:
        _print_table(policy, facts, steps, variants)
        _print_sms_lengths(texts)


def _sms_json(texts: dict[int, SmsLength]) -> list[dict[str, Any]]:
    """Each SMS step's text for the sample: characters as its encoding counts them, segments."""
    return [
        {"step": n, "characters": t.characters, "segments": t.segments, "encoding": t.encoding}
        for n, t in texts.items()
    ]


def _print_sms_lengths(texts: dict[int, SmsLength]) -> None:
    # Policy check refuses more than MAX_SEGMENTS; the count shows how close a text comes.
    for number, text in texts.items():
        Console().print(
            f"  step {number} (sms): {text.characters} characters, {text.segments} "
            f"segment{'s' if text.segments != 1 else ''} ({text.encoding}, at most {MAX_SEGMENTS})",
            highlight=False,
        )


def _variants(policy: RecoveryPolicy, sample: AbandonedCheckout) -> dict[int, str]:
    """Step number -> the A/B variant the sample gets, for the steps that have variants."""
    chosen: dict[int, str] = {}
    for index, step in enumerate(policy.steps):
        if isinstance(step, EmailStep):
            variant = assign_variant(step, sample.id or "", index)
            if variant is not None:
                chosen[index + 1] = variant.name
    return chosen


def _sample(path: Path | None) -> AbandonedCheckout:
    """The sample checkout in `path` (read as `start` reads a report), or the built-in one."""
    if path is None:
        return parse_report(SAMPLE_CHECKOUT)
    data = read_json(str(path), label=f"sample checkout {path}")
    if isinstance(data, dict) and "abandonedCheckout" in data:
        data = data["abandonedCheckout"]
    try:
        return parse_report(data)
    except InvalidInputError as err:
        raise InvalidInputError(f"sample checkout {path}", err.problems) from None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _facts(policy: RecoveryPolicy, sample: AbandonedCheckout, now: datetime) -> dict[str, Any]:
    assert sample.created_date is not None
    window = policy.send_window
    cap = policy.frequency_cap
    return {
        "policy": policy.name,
        "buyerTimeZone": buyer_zone(sample, policy).key,
        "sendWindow": f"{window.start:%H:%M}-{window.end:%H:%M}" if window else None,
        "frequencyCap": (
            f"{format_duration(cap.window)} ({cap.when_capped})"
            if cap.window.total_seconds()
            else None
        ),
        "consent": policy.consent,
        "onCartUpdate": policy.on_cart_update,
        "holdout": in_holdout(sample.id or "", policy.holdout_percent),
        "stale": is_stale(policy, sample.created_date, now),
        "abandonedAt": sample.created_date.isoformat(),
        "reportedAt": now.isoformat(),
    }


def _as_json(
    facts: dict[str, Any], steps: list[PlannedStep], variants: dict[int, str]
) -> dict[str, Any]:
    return {
        **facts,
        "steps": [
            {
                "step": s.number,
                "action": s.action,
                "template": s.template,
                # Only on steps with variants: the one this sample checkout gets.
                **({"variant": variants[s.number]} if s.number in variants else {}),
                "dueUtc": s.due.astimezone(UTC).isoformat(),
                "dueLocal": s.local_due.isoformat(),
                "movedIntoSendWindow": s.shifted_by_send_window,
                "overdueAtReport": s.overdue_at_report,
                "failedConditions": s.failed_conditions,
                "consent": s.consent,
                "outcome": s.outcome,
            }
            for s in steps
        ],
    }


def _print_table(
    policy: RecoveryPolicy,
    facts: dict[str, Any],
    steps: list[PlannedStep],
    variants: dict[int, str],
) -> None:
    console = Console()
    console.print(f"[green]Policy {policy.name!r} is valid.[/green]")
    for name, value in facts.items():
        if name == "overriddenTemplates":
            # Under templateOverrides, one file a line: what this shop's emails change.
            for template in value:
                console.print(f"    {template}", highlight=False)
        elif name == "templateOverrides" and value is None:
            continue
        elif name != "policy":
            console.print(f"  {name}: {'-' if value is None else value}")
    table = Table(title="Timeline for the sample checkout")
    for column in ("Step", "Action", "Due (UTC)", "Due (buyer)", "Conditions", "Consent", "Does"):
        table.add_column(column)
    for s in steps:
        moved = " (moved into send window)" if s.shifted_by_send_window else ""
        table.add_row(
            str(s.number),
            f"{s.action} {s.template}"
            + (f" (variant {variants[s.number]})" if s.number in variants else ""),
            f"{s.due.astimezone(UTC):%Y-%m-%d %H:%M}",
            f"{s.local_due:%Y-%m-%d %H:%M %Z}{moved}",
            "failed: " + ", ".join(s.failed_conditions) if s.failed_conditions else "hold",
            s.consent or "-",
            s.outcome,
        )
    console.print(table)
