"""The policy decisions a flow takes at each step, as pure functions of the policy and checkout.

`decide_step` is the one place that decides whether a step runs. The workflow calls it (and
`send_time`) with its own clock and state, so they stay deterministic; `plan` calls the same
functions for the timeline `policy check` and `checkouts show` print.
"""

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from domain.activity import NotSentReason
from domain.checkout import AbandonedCheckout
from domain.policy import ConsentMode, RecoveryPolicy, SendWindow, Step, StepConditions
from domain.sms import sms_refusal


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


def stable_bucket(seed: str, buckets: int) -> int:
    """A bucket in [0, buckets) that depends on `seed` alone: the same in every process, on
    every retry and replay (Python's own hash() is salted per process). SHA-256 spreads seeds
    evenly; the holdout and the A/B variants (domain.variants) both split checkouts with it."""
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") % buckets


def in_holdout(checkout_id: str, percent: float) -> bool:
    """Whether this checkout belongs to the group that gets nothing, to measure the lift.

    Derived from the id alone, so every part (service, workflow, `policy check`) agrees and a
    replay decides the same; the hash spreads ids evenly over 10,000 buckets.
    """
    if percent <= 0:
        return False
    return stable_bucket(checkout_id, 10_000) < round(percent * 100)


def is_stale(policy: RecoveryPolicy, abandoned_at: datetime, reported_at: datetime) -> bool:
    """Reported so long after the abandonment that messaging the buyer would surprise them."""
    return policy.max_age > timedelta(0) and reported_at - abandoned_at > policy.max_age


def is_overdue(step: Step, abandoned_at: datetime, reported_at: datetime) -> bool:
    """The step's due time had passed when the checkout was reported (see overdue_steps)."""
    return abandoned_at + step.delay < reported_at


def send_time(
    policy: RecoveryPolicy, step: Step, checkout: AbandonedCheckout, due: datetime, now: datetime
) -> datetime:
    """When a step due at `due` may run, `now` at the earliest: emails wait for the buyer's
    send window, texts for the SMS window, staff steps for nothing."""
    earliest = max(due, now)
    window = buyer_window(policy, step)
    if window is None:
        return earliest
    return next_send_time(earliest, window, buyer_zone(checkout, policy))


def buyer_window(policy: RecoveryPolicy, step: Step) -> SendWindow | None:
    """The daily hours a step that reaches the buyer keeps to (None: any time)."""
    if step.action == "email":
        return policy.send_window
    if step.action == "sms":
        return policy.sms_window
    return None


@dataclass(frozen=True)
class FlowProgress:
    """What a flow's earlier steps and signals leave for the decision of its next step."""

    emails_offered: int = 0
    """Email steps that reached the consent decision: first_email_only allows the first only
    (an email step ruled out before, for its conditions, holdout, ..., is no first email)."""
    unsubscribed: bool = False
    """The buyer's address unsubscribed (the flow's signal; `plan` assumes it does not)."""
    suppressed: NotSentReason | None = None
    """`bounced` or `complained`: the relay reported the buyer's address (the flow's
    email_suppressed signal, store.feedback); a default, so states carried before it read."""

    @property
    def address_refusal(self) -> NotSentReason | None:
        """Why the buyer's address may get no further email from this flow (None: it may): the
        one rule for a step's decision and for a frequency-cap wait that the signals end."""
        if self.unsubscribed:
            return NotSentReason.UNSUBSCRIBED
        return self.suppressed


@dataclass(frozen=True)
class StepDecision:
    """Whether a step runs, and why not when it does not."""

    reason: NotSentReason | None
    """None when the step runs; else the first rule that rules it out, in the flow's order."""
    failed_conditions: tuple[str, ...]
    """The step's conditions that do not hold (also when an earlier rule ruled it out)."""
    consent: Consent | None
    """The consent decision of an email step that reached it; None for every other step."""
    progress: FlowProgress
    """The flow's progress after this step, for the next step's decision."""

    @property
    def runs(self) -> bool:
        return self.reason is None

    @property
    def not_sent_reason(self) -> str | None:
        """The reason as an EMAIL_NOT_SENT entry records it: `condition_failed:` names the
        conditions that failed."""
        if self.reason is NotSentReason.CONDITION_FAILED:
            return f"{NotSentReason.CONDITION_FAILED}:{','.join(self.failed_conditions)}"
        return self.reason


def decide_step(
    policy: RecoveryPolicy,
    index: int,
    checkout: AbandonedCheckout,
    *,
    abandoned_at: datetime,
    reported_at: datetime,
    progress: FlowProgress,
) -> StepDecision:
    """Whether step `index` of `policy` runs for `checkout` (its newest snapshot) once it is due.

    The one copy of the rule: the workflow calls it for each step after the step's wait, and
    `plan` for each step of the timeline it prints. The rules apply in this order: holdout, a
    stale report, an overdue step the policy skips, failed conditions; then, for an email step
    that gets this far, the consent decision and an unsubscribe, bounce or complaint; for an SMS
    step, its consent and phone number (domain.sms.sms_refusal).
    """
    step = policy.steps[index]
    failed = tuple(failed_conditions(step.conditions, checkout))
    ruled_out: NotSentReason | None = None
    if in_holdout(checkout.id or "", policy.holdout_percent):
        ruled_out = NotSentReason.HOLDOUT
    elif is_stale(policy, abandoned_at, reported_at):
        ruled_out = NotSentReason.STALE_REPORT
    elif policy.overdue_steps == "skip" and is_overdue(step, abandoned_at, reported_at):
        ruled_out = NotSentReason.OVERDUE
    elif failed:
        ruled_out = NotSentReason.CONDITION_FAILED
    if ruled_out is None and step.action == "sms":
        # Consent and number are SMS's own; a STOP is found by the step's look at the store.
        ruled_out = sms_refusal(checkout)
    if ruled_out is not None or step.action != "email":
        return StepDecision(
            reason=ruled_out, failed_conditions=failed, consent=None, progress=progress
        )
    offered = replace(progress, emails_offered=progress.emails_offered + 1)
    consent = consent_decision(policy.consent, checkout.marketing_consent, offered.emails_offered)
    refusal = progress.address_refusal
    if refusal is None and consent is Consent.REFUSED:
        refusal = NotSentReason.NO_CONSENT
    return StepDecision(reason=refusal, failed_conditions=failed, consent=consent, progress=offered)


@dataclass(frozen=True)
class PlannedStep:
    """One step of a checkout's timeline as `policy check` prints it."""

    number: int
    action: str
    template: str
    due: datetime
    """When the step runs: its delay from the abandonment (not before the report, nor before the
    step before it), moved into the send window."""
    local_due: datetime
    shifted_by_send_window: bool
    """An email (SMS) step that waits for the send window (SMS window): outside it when due, or
    behind an earlier step that waits for one."""
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
    # The flow does not wait for the steps of a stale report: it rules them all out at once.
    stale = is_stale(policy, abandoned_at, reported_at)
    planned: list[PlannedStep] = []
    progress = FlowProgress()
    # The flow runs its steps one after the other: a step whose own due time has passed while
    # an earlier one waited (for the send window) runs right after that one.
    earliest = reported_at
    for index, step in enumerate(policy.steps):
        decision = decide_step(
            policy,
            index,
            checkout,
            abandoned_at=abandoned_at,
            reported_at=reported_at,
            progress=progress,
        )
        progress = decision.progress
        if stale:
            due = own_due = reported_at
        else:
            own_due = max(abandoned_at + step.delay, reported_at)
            due = earliest = send_time(policy, step, checkout, own_due, earliest)
        if decision.runs:
            outcome = "send" if step.action in ("email", "sms") else "run"
        else:
            outcome = f"skip: {decision.not_sent_reason}"
        planned.append(
            PlannedStep(
                number=index + 1,
                action=step.action,
                template=step.template,
                due=due,
                local_due=due.astimezone(zone),
                shifted_by_send_window=buyer_window(policy, step) is not None and due != own_due,
                overdue_at_report=is_overdue(step, abandoned_at, reported_at),
                failed_conditions=list(decision.failed_conditions),
                consent=decision.consent,
                outcome=outcome,
            )
        )
    return planned
