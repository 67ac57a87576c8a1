"""The policy decisions a flow takes at each step, as pure functions of the policy and checkout.

The workflow calls them with its own clock and state, so they stay deterministic; `policy check`
calls the same functions to print the timeline a sample checkout would get.
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from domain.activity import NotSentReason
from domain.checkout import AbandonedCheckout
from domain.policy import ConsentMode, RecoveryPolicy, SendWindow, StepConditions


def buyer_zone(checkout: AbandonedCheckout, policy: RecoveryPolicy) -> ZoneInfo:
    """The buyer's own zone when the checkout names one, else the shop's."""
    return ZoneInfo(checkout.buyer_time_zone or policy.time_zone)


def next_send_time(due: datetime, window: SendWindow | None, zone: ZoneInfo) -> datetime:
    """`due` itself when it falls inside the daily send window in `zone`, else the window's next
    opening. Wall-clock arithmetic happens in the zone, so a daylight-saving change between the
    due time and the opening is honoured (09:00 stays 09:00 local)."""
    if window is None:
        return due
    local = due.astimezone(zone)
    if _inside(local.time(), window):
        return due
    day = local.date()
    if local.time() >= window.start:
        day += timedelta(days=1)
    opening = datetime.combine(day, window.start, tzinfo=zone)
    # A window that opens inside a spring-forward gap (02:30 on the change night) does not exist
    # that day; the round trip through UTC moves it to the first real instant after the gap.
    return opening.astimezone(UTC)


def _inside(moment: time, window: SendWindow) -> bool:
    if window.start < window.end:
        return window.start <= moment < window.end
    return moment >= window.start or moment < window.end  # across midnight


def failed_conditions(conditions: StepConditions, checkout: AbandonedCheckout) -> list[str]:
    """The conditions that do not hold, each as `name` (empty when the step may run)."""
    failed: list[str] = []
    total = Decimal(checkout.total_price.amount)
    if conditions.currencies is not None and checkout.currency not in conditions.currencies:
        failed.append("currencies")
    if conditions.min_total is not None and total < Decimal(conditions.min_total):
        failed.append("min_total")
    if conditions.max_total is not None and total > Decimal(conditions.max_total):
        failed.append("max_total")
    buyer = checkout.buyer_info
    is_member = bool(buyer.member_id or buyer.user_id)
    if (conditions.buyer == "member" and not is_member) or (
        conditions.buyer == "visitor" and is_member
    ):
        failed.append("buyer")
    if conditions.languages is not None:
        language = checkout.buyer_language.lower().replace("_", "-")
        wanted = {lang.lower().replace("_", "-") for lang in conditions.languages}
        if language not in wanted and language.split("-")[0] not in wanted:
            failed.append("languages")
    if conditions.has_phone is not None and bool(checkout.contact_details.phone) != (
        conditions.has_phone
    ):
        failed.append("has_phone")
    return failed


class Consent(StrEnum):
    """The consent decision recorded with each email step."""

    SUBSCRIBER = "subscriber"
    """The buyer agreed to marketing email."""
    NOT_REQUIRED = "not_required"
    """The policy mails every buyer (consent = "all")."""
    FIRST_EMAIL = "first_email"
    """Not a subscriber; the policy allows this one first email."""
    REFUSED = "refused"
    """Not a subscriber, and the policy allows no (further) email."""


def consent_decision(mode: ConsentMode, subscribed: bool | None, email_number: int) -> Consent:
    """`email_number` counts the flow's email steps from 1, this one included."""
    if subscribed:
        return Consent.SUBSCRIBER
    if mode == "all":
        return Consent.NOT_REQUIRED
    if mode == "first_email_only" and email_number == 1:
        return Consent.FIRST_EMAIL
    return Consent.REFUSED


def in_holdout(checkout_id: str, percent: float) -> bool:
    """Whether this checkout belongs to the group that gets nothing, to measure the lift.

    Derived from the id alone, so every part (service, workflow, `policy check`) agrees and a
    replay decides the same; the hash spreads ids evenly over 10,000 buckets.
    """
    if percent <= 0:
        return False
    bucket = int.from_bytes(hashlib.sha256(checkout_id.encode()).digest()[:8], "big") % 10_000
    return bucket < round(percent * 100)


def is_stale(policy: RecoveryPolicy, abandoned_at: datetime, reported_at: datetime) -> bool:
    """Reported so long after the abandonment that messaging the buyer would surprise them."""
    return policy.max_age > timedelta(0) and reported_at - abandoned_at > policy.max_age


@dataclass(frozen=True)
class PlannedStep:
    """One step of a checkout's timeline as `policy check` prints it."""

    number: int
    action: str
    template: str
    due: datetime
    """When the step runs: its delay from the abandonment, moved into the send window."""
    local_due: datetime
    shifted_by_send_window: bool
    overdue_at_report: bool
    failed_conditions: list[str]
    consent: Consent | None
    """Email steps only."""
    outcome: str
    """What the step would do: "send", "run", or why not ("skip: holdout", ...)."""


def plan(
    policy: RecoveryPolicy,
    checkout: AbandonedCheckout,
    abandoned_at: datetime,
    reported_at: datetime,
) -> list[PlannedStep]:
    """The timeline a checkout reported at `reported_at` would get, if nothing changes meanwhile
    (no recovery, unsubscribe, cart update or frequency cap from another checkout)."""
    zone = buyer_zone(checkout, policy)
    holdout = in_holdout(checkout.id or "", policy.holdout_percent)
    stale = is_stale(policy, abandoned_at, reported_at)
    planned: list[PlannedStep] = []
    emails = 0
    for index, step in enumerate(policy.steps):
        is_email = step.action == "email"
        base_due = max(abandoned_at + step.delay, reported_at)
        due = next_send_time(base_due, policy.send_window, zone) if is_email else base_due
        overdue = abandoned_at + step.delay < reported_at
        failed = failed_conditions(step.conditions, checkout)
        skip_overdue = overdue and policy.overdue_steps == "skip"
        ruled_out = skip_reason(
            holdout=holdout, stale=stale, skip_overdue=skip_overdue, failed=failed, consent=None
        )
        consent = None
        # As in the flow: only an email step that reaches the consent decision counts toward
        # first_email_only (one skipped for its conditions, holdout, ... is no first email).
        if is_email and ruled_out is None:
            emails += 1
            consent = consent_decision(policy.consent, checkout.marketing_consent, emails)
        planned.append(
            PlannedStep(
                number=index + 1,
                action=step.action,
                template=step.template,
                due=due,
                local_due=due.astimezone(zone),
                shifted_by_send_window=due != base_due,
                overdue_at_report=overdue,
                failed_conditions=failed,
                consent=consent,
                outcome=_outcome(
                    holdout=holdout,
                    stale=stale,
                    skip_overdue=skip_overdue,
                    failed=failed,
                    consent=consent,
                    is_email=is_email,
                ),
            )
        )
    return planned


def skip_reason(
    *, holdout: bool, stale: bool, skip_overdue: bool, failed: list[str], consent: Consent | None
) -> str | None:
    """Why a step does not run, in the order the flow checks; None when it runs. The reasons
    are the EMAIL_NOT_SENT reasons an email step records."""
    if holdout:
        return NotSentReason.HOLDOUT
    if stale:
        return NotSentReason.STALE_REPORT
    if skip_overdue:
        return NotSentReason.OVERDUE
    if failed:
        return f"{NotSentReason.CONDITION_FAILED}:{','.join(failed)}"
    if consent is Consent.REFUSED:
        return NotSentReason.NO_CONSENT
    return None


def _outcome(
    *,
    holdout: bool,
    stale: bool,
    skip_overdue: bool,
    failed: list[str],
    consent: Consent | None,
    is_email: bool,
) -> str:
    reason = skip_reason(
        holdout=holdout, stale=stale, skip_overdue=skip_overdue, failed=failed, consent=consent
    )
    if reason is not None:
        return f"skip: {reason}"
    return "send" if is_email else "run"
