"""The timeline `policy check` prints is the timeline the flow records, over a matrix of policies.

Each case runs a real flow on the time-skipping test server (real worker, SMTP server, SQLite
store, a loopback receiver for notifications) and compares what `plan` predicted right after the
report (step numbers, outcome, consent, due time) with the checkout's activity entries. Both go
through domain.schedule.decide_step, so each case also pins the outcomes to a hand-written list:
a rule wrong in both places would still fail.

Outside plan's scope, by its own docstring: another checkout's email under the frequency cap,
unsubscribes, recoveries and cart updates. The cap cases say which steps another checkout's email
caps and check the flow's behaviour for those steps separately; the others have scenarios in
test_policy_features.py and test_recovery_scenarios.py.
"""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.testing import WorkflowEnvironment

from domain.activity import ActivityEntry, ActivityType, NotSentReason
from domain.checkout import AbandonedCheckout
from domain.policy import RecoveryPolicy, parse_policy
from domain.schedule import PlannedStep, is_stale, plan
from service.checkouts import CheckoutService
from store.sql import SqlStore
from tests.support import SmtpServer, engine_settings, eventually, running_engine, sample_checkout
from tests.workflows.record_histories import _http_receiver as http_receiver
from tests.workflows.scenarios import flow_result, has_entry, report_now

TOLERANCE = timedelta(seconds=5)
"""The test server fires a timer at its due time; the workflow task that follows runs a moment
later on the worker's real clock."""

FREQUENCY_CAPPED = f"skip: {NotSentReason.FREQUENCY_CAPPED}"


@dataclass(frozen=True)
class Case:
    name: str
    expected: list[tuple[int, str, str | None]]
    """(step, outcome, consent) of each entry the flow records, as `plan` words outcomes. A
    staff step that is ruled out records nothing (the reference has no such entry)."""
    policy: dict[str, Any] = field(default_factory=dict)
    """Policy keys besides the steps (every case has the four steps of _steps)."""
    conditions: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Conditions by step number."""
    buyer: dict[str, Any] = field(default_factory=dict)
    """Overrides of the sample checkout (89.90 EUR, a visitor with no phone, no consent)."""
    abandoned_before: timedelta = timedelta(0)
    """How long before the report the checkout was abandoned."""
    send_window_in: str | None = None
    """The buyer's zone (given in the checkout) for a send window that opens, on the hour,
    `window_opens_after` the report and lasts 2 h. Both email steps wait for it."""
    window_opens_after: timedelta = timedelta(hours=4)
    """4 h: the staff steps (due at 4 h and 5 h) run on time; later, they wait for step 2."""
    capped_by_prior_email: tuple[int, ...] = ()
    """Steps that another checkout's email to the same buyer, sent at the report, caps."""


def _steps(conditions: dict[int, dict[str, Any]], receiver: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [
        {"delay": "1h", "action": "email", "template": "reminder"},
        {"delay": "3h", "action": "email", "template": "last_chance"},
        {"delay": "4h", "action": "notification", "url": receiver},
        {"delay": "5h", "action": "task", "assignee": "sales"},
    ]
    for number, wanted in conditions.items():
        steps[number - 1]["conditions"] = wanted
    return steps


SEND, RUN, HOLDOUT, STALE, OVERDUE, NO_CONSENT = (
    "send",
    "run",
    "skip: holdout",
    "skip: stale_report",
    "skip: overdue",
    "skip: no_consent",
)
STAFF_RUN = [(3, RUN, None), (4, RUN, None)]

CASES = [
    Case(
        "consent_all",
        [(1, SEND, "not_required"), (2, SEND, "not_required"), *STAFF_RUN],
    ),
    Case(
        "subscribers_only_visitor",
        [(1, NO_CONSENT, "refused"), (2, NO_CONSENT, "refused"), *STAFF_RUN],
        policy={"consent": "subscribers_only"},
    ),
    Case(
        "subscribers_only_subscriber",
        [(1, SEND, "subscriber"), (2, SEND, "subscriber"), *STAFF_RUN],
        policy={"consent": "subscribers_only"},
        buyer={"marketingConsent": True},
    ),
    Case(
        "first_email_only_visitor",
        [(1, SEND, "first_email"), (2, NO_CONSENT, "refused"), *STAFF_RUN],
        policy={"consent": "first_email_only"},
    ),
    Case(
        # Step 1 never reaches the consent decision, so step 2 is the first email.
        "first_email_only_first_step_condition_fails",
        [(1, "skip: condition_failed:min_total", None), (2, SEND, "first_email"), *STAFF_RUN],
        policy={"consent": "first_email_only"},
        conditions={1: {"min_total": "100.00"}},
    ),
    Case(
        # Every failed condition is named; a staff step that fails records nothing.
        "conditions_fail_on_an_email_and_a_staff_step",
        [
            (1, SEND, "not_required"),
            (2, "skip: condition_failed:currencies,min_total", None),
            (4, RUN, None),
        ],
        conditions={
            1: {"max_total": "100.00", "languages": ["en"]},
            2: {"currencies": ["USD"], "min_total": "100.00"},
            3: {"buyer": "member"},
            4: {"has_phone": True},
        },
        buyer={"contactDetails": {"firstName": "Ada", "phone": "+44 20 7946 0000"}},
    ),
    Case(
        # Holdout comes first: before the conditions and the consent decision.
        "holdout",
        [(1, HOLDOUT, None), (2, HOLDOUT, None)],
        policy={"holdout_percent": 100, "consent": "first_email_only"},
        conditions={2: {"min_total": "100.00"}},
    ),
    Case(
        "send_window_in_the_buyers_zone",
        [(1, SEND, "not_required"), (2, SEND, "not_required"), *STAFF_RUN],
        send_window_in="Asia/Tokyo",
    ),
    Case(
        # The steps run in order: the staff steps, due meanwhile, run right after step 2.
        "send_window_holds_back_the_later_steps",
        [(1, SEND, "not_required"), (2, SEND, "not_required"), *STAFF_RUN],
        send_window_in="UTC",
        window_opens_after=timedelta(hours=8),
    ),
    Case(
        # The window comes before the consent decision: a refused email is recorded at opening.
        "send_window_with_consent_refused",
        [(1, NO_CONSENT, "refused"), (2, NO_CONSENT, "refused"), *STAFF_RUN],
        policy={"consent": "subscribers_only"},
        send_window_in="UTC",
    ),
    Case(
        # Steps 1 and 2 were due before the report: they run at once, the others on time.
        "overdue_steps_run",
        [(1, SEND, "not_required"), (2, SEND, "not_required"), *STAFF_RUN],
        abandoned_before=timedelta(hours=3, minutes=30),
    ),
    Case(
        "overdue_steps_skipped",
        [(1, OVERDUE, None), (2, OVERDUE, None), *STAFF_RUN],
        policy={"overdue_steps": "skip"},
        abandoned_before=timedelta(hours=3, minutes=30),
    ),
    Case(
        # Overdue comes before the conditions; the skipped step 1 is no first email.
        "overdue_skip_then_first_email",
        [(1, OVERDUE, None), (2, SEND, "first_email"), *STAFF_RUN],
        policy={"overdue_steps": "skip", "consent": "first_email_only"},
        conditions={1: {"min_total": "100.00"}},
        abandoned_before=timedelta(hours=2),
    ),
    Case(
        # A stale report: every step ruled out at once, at the report, send window or not.
        "stale_report",
        [(1, STALE, None), (2, STALE, None)],
        policy={"max_age": "30d", "overdue_steps": "skip"},
        abandoned_before=timedelta(days=40),
        send_window_in="UTC",
    ),
    Case(
        # The cap counts only other checkouts' emails: a flow's own steps are not capped.
        "frequency_cap_skip_without_a_prior_email",
        [(1, SEND, "not_required"), (2, SEND, "not_required"), *STAFF_RUN],
        policy={"frequency_cap": {"window": "24h", "when_capped": "skip"}},
    ),
    Case(
        # The other checkout's email at the report caps step 1 (1 h later, window 2 h), not
        # step 2 (3 h later).
        "frequency_cap_skip_after_a_prior_email",
        [(1, FREQUENCY_CAPPED, "not_required"), (2, SEND, "not_required"), *STAFF_RUN],
        policy={"frequency_cap": {"window": "2h", "when_capped": "skip"}},
        capped_by_prior_email=(1,),
    ),
    Case(
        # The capped step 1 took the consent decision: first_email_only allows no step 2.
        "frequency_cap_skip_takes_the_first_email",
        [(1, FREQUENCY_CAPPED, "first_email"), (2, NO_CONSENT, "refused"), *STAFF_RUN],
        policy={
            "frequency_cap": {"window": "2h", "when_capped": "skip"},
            "consent": "first_email_only",
        },
        capped_by_prior_email=(1,),
    ),
]


@dataclass(frozen=True)
class Recorded:
    step: int
    outcome: str
    consent: str | None
    at: datetime


def _recorded(entry: ActivityEntry) -> Recorded:
    assert entry.step is not None, entry
    outcome = {
        ActivityType.EMAIL_SENT: SEND,
        ActivityType.EMAIL_NOT_SENT: f"skip: {entry.reason}",
        ActivityType.NOTIFICATION_SENT: RUN,
        ActivityType.TASK_CREATED: RUN,
    }[entry.type]
    return Recorded(entry.step, outcome, entry.consent, entry.created_date)


def _differences(
    predicted: list[PlannedStep], recorded: list[Recorded], capped: tuple[int, ...] = ()
) -> list[str]:
    """Where the recorded timeline departs from the predicted one (empty when it does not).

    A step in `capped` was predicted to send and is expected capped instead, as plan cannot see
    the other checkout's email; its consent and due time are still plan's.
    """
    expected: list[Recorded] = []
    for step in predicted:
        if step.action != "email" and step.outcome != RUN:
            continue  # a skipped staff step records nothing
        outcome = step.outcome
        if step.number in capped:
            outcome = FREQUENCY_CAPPED if outcome == SEND else f"{outcome} (not a send to cap)"
        expected.append(Recorded(step.number, outcome, step.consent, step.due))
    found = sorted(recorded, key=lambda r: r.step)
    problems: list[str] = []
    if [(r.step, r.outcome, r.consent) for r in found] != [
        (e.step, e.outcome, e.consent) for e in expected
    ]:
        problems.append(f"recorded {found}, predicted {expected}")
    for want, got in zip(expected, found, strict=False):
        if abs(got.at - want.at) > TOLERANCE:
            problems.append(f"step {want.step} at {got.at}, predicted {want.at}")
    return problems


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    """A staff-notification endpoint on loopback that answers 200 (the one the recorded
    histories use)."""
    with http_receiver() as url:
        yield url


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    sql_store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await sql_store.create_schema()
    yield sql_store
    await sql_store.close()


def _send_window(opening: datetime, zone_name: str) -> dict[str, str]:
    """Opens in the hour of `opening` (in the zone) and lasts 2 h."""
    opens = opening.astimezone(ZoneInfo(zone_name)).hour
    return {"start": f"{opens:02d}:00", "end": f"{(opens + 2) % 24:02d}:00"}


def _case_policy(case: Case, now: datetime, receiver: str) -> RecoveryPolicy:
    keys: dict[str, Any] = {"name": case.name, "listen_window": "1h", **case.policy}
    if case.send_window_in is not None:
        keys["send_window"] = _send_window(now + case.window_opens_after, case.send_window_in)
    return parse_policy({**keys, "steps": _steps(case.conditions, receiver)}, case.name)


async def _mail_the_buyer_now(service: CheckoutService, env: WorkflowEnvironment, store: SqlStore):
    """Another checkout of the same buyer, mailed at once (its own policy: one email at 0s)."""
    policy = parse_policy(
        {
            "name": "prior",
            "listen_window": "1h",
            "frequency_cap": {"window": "0s"},
            "steps": [{"delay": "0s", "action": "email", "template": "reminder"}],
        },
        "prior",
    )
    prior, _ = await report_now(service, env, sample_checkout(checkoutId="prior"), policy)
    await eventually(has_entry(store, prior, ActivityType.EMAIL_SENT), what="the prior email")


async def _report(
    service: CheckoutService, env: WorkflowEnvironment, case: Case, policy: RecoveryPolicy
) -> str:
    zone = {"buyerTimeZone": case.send_window_in} if case.send_window_in else {}
    checkout = sample_checkout(**zone, **case.buyer)
    if not case.abandoned_before:
        checkout_id, _ = await report_now(service, env, checkout, policy)
        return checkout_id
    now = await env.get_current_time()
    abandoned = checkout.model_copy(update={"created_date": now - case.abandoned_before})
    return (await service.report(abandoned, policy, now=now)).checkout_id


async def _stored(store: SqlStore, checkout_id: str) -> AbandonedCheckout:
    found = await store.get(checkout_id)
    assert found is not None
    return found


def _predict(policy: RecoveryPolicy, reported: AbandonedCheckout) -> list[PlannedStep]:
    """What `policy check` and `checkouts show` print for the checkout as it was reported."""
    assert reported.abandoned_at is not None and reported.scheduled_at is not None
    return plan(policy, reported, reported.abandoned_at, reported.scheduled_at)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_the_flow_records_the_timeline_plan_predicts(
    case: Case,
    time_skipping_env: WorkflowEnvironment,
    sqlite_store: SqlStore,
    smtp: SmtpServer,
    receiver: str,
) -> None:
    env, store = time_skipping_env, sqlite_store
    policy = _case_policy(case, await env.get_current_time(), receiver)
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        if case.capped_by_prior_email:
            await _mail_the_buyer_now(service, env, store)
        checkout_id = await _report(service, env, case, policy)
        reported = await _stored(store, checkout_id)
        predicted = _predict(policy, reported)
        result = await flow_result(service, env, checkout_id)

    recorded = [_recorded(e) for e in (await _stored(store, checkout_id)).activities[1:]]
    assert _differences(predicted, recorded, case.capped_by_prior_email) == []
    assert [(r.step, r.outcome, r.consent) for r in recorded] == case.expected
    assert result.steps_run == len(policy.steps)
    _assert_the_case_exercises_its_branch(case, policy, reported, predicted)


def _assert_the_case_exercises_its_branch(
    case: Case, policy: RecoveryPolicy, reported: AbandonedCheckout, predicted: list[PlannedStep]
) -> None:
    assert reported.abandoned_at is not None and reported.scheduled_at is not None
    stale = is_stale(policy, reported.abandoned_at, reported.scheduled_at)
    if stale:  # no step waits, not even for the send window
        assert [p.due for p in predicted] == [reported.scheduled_at] * len(predicted)
    elif case.send_window_in is not None:
        assert [p.shifted_by_send_window for p in predicted] == [True, True, False, False]
        assert predicted[0].due == predicted[1].due  # both wait for the same opening
        assert predicted[0].local_due.tzinfo == ZoneInfo(case.send_window_in)
        held_back = predicted[2].due > reported.abandoned_at + timedelta(hours=4)
        assert held_back == (case.window_opens_after > timedelta(hours=5))
    if case.abandoned_before:
        assert predicted[0].overdue_at_report  # step 1 was due before the report
    for number in case.capped_by_prior_email:
        assert predicted[number - 1].outcome == SEND  # plan cannot see the other checkout


async def test_a_wrong_prediction_shows_as_a_difference(
    time_skipping_env: WorkflowEnvironment,
    sqlite_store: SqlStore,
    smtp: SmtpServer,
    receiver: str,
) -> None:
    """The comparison can fail: plans for a slightly different policy or abandonment time each
    differ from what the flow recorded, in outcome, consent or due time."""
    env, store = time_skipping_env, sqlite_store
    now = await env.get_current_time()
    case = Case(
        "first_email_only_in_a_window",
        [(1, SEND, "first_email"), (2, NO_CONSENT, "refused"), *STAFF_RUN],
        policy={"consent": "first_email_only"},
        send_window_in="UTC",
    )
    policy = _case_policy(case, now, receiver)
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id = await _report(service, env, case, policy)
        reported = await _stored(store, checkout_id)
        await flow_result(service, env, checkout_id)

    recorded = [_recorded(e) for e in (await _stored(store, checkout_id)).activities[1:]]
    assert _differences(_predict(policy, reported), recorded) == []
    assert [(r.step, r.outcome, r.consent) for r in recorded] == case.expected
    wrong_cases = {
        "consent all": replace(case, policy={"consent": "all"}),
        "no send window": replace(case, send_window_in=None),
        "holdout": replace(case, policy={**case.policy, "holdout_percent": 100}),
        "notification for members": replace(case, conditions={3: {"buyer": "member"}}),
    }
    for what, wrong_case in wrong_cases.items():
        wrong = _predict(_case_policy(wrong_case, now, receiver), reported)
        assert _differences(wrong, recorded), what
    assert reported.abandoned_at is not None and reported.scheduled_at is not None
    an_hour_earlier = reported.abandoned_at - timedelta(hours=1)
    assert _differences(plan(policy, reported, an_hour_earlier, reported.scheduled_at), recorded)
    # A step expected capped by another checkout's email differs from one that was sent.
    assert _differences(_predict(policy, reported), recorded, capped=(1,))
