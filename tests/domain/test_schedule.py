"""The pure policy decisions: send windows in the buyer's zone, conditions, consent, holdout,
and decide_step, which puts them together for each step (for the flow and for `plan`)."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.activity import NotSentReason
from domain.policy import RecoveryPolicy, SendWindow, StepConditions, parse_policy
from domain.schedule import (
    Consent,
    FlowProgress,
    StepDecision,
    consent_decision,
    decide_step,
    failed_conditions,
    in_holdout,
    next_send_time,
    plan,
)
from tests.support import sample_checkout

BERLIN = ZoneInfo("Europe/Berlin")
DAY = SendWindow(start=time(9), end=time(20))
NIGHT = SendWindow(start=time(22), end=time(6))


def _berlin(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("due", "window", "expected"),
    [
        (_berlin(2026, 6, 1, 12, 0), DAY, _berlin(2026, 6, 1, 12, 0)),  # inside: unchanged
        (_berlin(2026, 6, 1, 20, 0), DAY, _berlin(2026, 6, 2, 9, 0)),  # end is exclusive
        (_berlin(2026, 6, 1, 7, 0), DAY, _berlin(2026, 6, 1, 9, 0)),  # before opening: same day
        (_berlin(2026, 6, 1, 23, 0), NIGHT, _berlin(2026, 6, 1, 23, 0)),  # across midnight
        (_berlin(2026, 6, 1, 3, 0), NIGHT, _berlin(2026, 6, 1, 3, 0)),
        (_berlin(2026, 6, 1, 12, 0), NIGHT, _berlin(2026, 6, 1, 22, 0)),
        # Autumn: 23:00 summer time (UTC+2) waits for 09:00 winter time (UTC+1).
        (_berlin(2026, 10, 24, 23, 0), DAY, datetime(2026, 10, 25, 8, 0, tzinfo=UTC)),
        # Spring: 23:00 winter time waits for 09:00 summer time.
        (_berlin(2026, 3, 28, 23, 0), DAY, datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),
    ],
)
def test_next_send_time(due: datetime, window: SendWindow, expected: datetime) -> None:
    assert next_send_time(due, window, BERLIN) == expected


def test_a_window_opening_inside_the_spring_gap_opens_right_after_it() -> None:
    window = SendWindow(start=time(2, 30), end=time(4))
    opening = next_send_time(_berlin(2026, 3, 28, 12, 0), window, BERLIN)
    assert opening == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 summer time


def test_no_window_means_now() -> None:
    due = _berlin(2026, 6, 1, 3, 0)
    assert next_send_time(due, None, BERLIN) is due


def test_conditions_name_each_failure() -> None:
    checkout = sample_checkout(buyerLanguage="de-AT")  # 89.90 EUR, a visitor, no phone
    assert failed_conditions(StepConditions(), checkout) == []
    strict = StepConditions(
        min_total="100", currencies=["USD"], buyer="member", languages=["fr"], has_phone=True
    )
    assert failed_conditions(strict, checkout) == [
        "currencies",
        "min_total",
        "buyer",
        "languages",
        "has_phone",
    ]
    loose = StepConditions(max_total="89.90", buyer="visitor", languages=["de"], has_phone=False)
    assert failed_conditions(loose, checkout) == []


def test_consent_modes() -> None:
    assert consent_decision("all", None, 3) is Consent.NOT_REQUIRED
    assert consent_decision("subscribers_only", None, 1) is Consent.REFUSED
    assert consent_decision("subscribers_only", True, 2) is Consent.SUBSCRIBER
    assert consent_decision("first_email_only", False, 1) is Consent.FIRST_EMAIL
    assert consent_decision("first_email_only", False, 2) is Consent.REFUSED


def test_holdout_is_deterministic_and_near_its_share() -> None:
    ids = [f"checkout-{n}" for n in range(10_000)]
    held = [i for i in ids if in_holdout(i, 10)]
    assert 900 <= len(held) <= 1100
    assert held == [i for i in ids if in_holdout(i, 10)]
    assert not any(in_holdout(i, 0) for i in ids[:100])
    assert all(in_holdout(i, 100) for i in ids[:100])


ABANDONED = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def _policy(**keys: object) -> RecoveryPolicy:
    steps = [
        {"delay": "1h", "action": "email", "template": "reminder"},
        {"delay": "3h", "action": "email", "template": "last_chance"},
        {"delay": "4h", "action": "task", "assignee": "sales"},
    ]
    return parse_policy({"name": "t", "steps": steps, **keys}, "t")


def _decide(
    policy: RecoveryPolicy,
    index: int = 0,
    *,
    reported_after: timedelta = timedelta(0),
    progress: FlowProgress | None = None,
    **checkout: object,
) -> StepDecision:
    return decide_step(
        policy,
        index,
        sample_checkout(**checkout).model_copy(update={"id": "c-decide"}),
        abandoned_at=ABANDONED,
        reported_at=ABANDONED + reported_after,
        progress=progress or FlowProgress(),
    )


def test_decide_step_applies_the_rules_in_the_flows_order() -> None:
    """Each rule is taken away in turn: the next one in the order then gives the reason."""
    failing = {
        "steps": [
            {
                "delay": "1h",
                "action": "email",
                "template": "reminder",
                "conditions": {"min_total": "100.00", "has_phone": True},
            }
        ]
    }
    every_rule = {
        "holdout_percent": 100,
        "max_age": "1d",
        "overdue_steps": "skip",
        "consent": "subscribers_only",
        **failing,
    }
    unsubscribed = FlowProgress(unsubscribed=True)
    late, stale = timedelta(hours=2), timedelta(days=2)

    def reason(keys: dict[str, object], after: timedelta, progress: FlowProgress) -> str | None:
        return _decide(_policy(**keys), reported_after=after, progress=progress).not_sent_reason

    assert reason(every_rule, stale, unsubscribed) == NotSentReason.HOLDOUT
    every_rule["holdout_percent"] = 0
    assert reason(every_rule, stale, unsubscribed) == NotSentReason.STALE_REPORT
    assert reason(every_rule, late, unsubscribed) == NotSentReason.OVERDUE
    every_rule["overdue_steps"] = "run"
    assert reason(every_rule, late, unsubscribed) == "condition_failed:min_total,has_phone"
    del every_rule["steps"]
    assert reason(every_rule, late, unsubscribed) == NotSentReason.UNSUBSCRIBED
    assert reason(every_rule, late, FlowProgress()) == NotSentReason.NO_CONSENT
    every_rule["consent"] = "all"
    assert reason(every_rule, late, FlowProgress()) is None


def test_a_ruled_out_email_step_takes_no_consent_decision() -> None:
    policy = _policy(consent="first_email_only", holdout_percent=100)
    decision = _decide(policy)
    assert (decision.runs, decision.reason, decision.consent) == (
        False,
        NotSentReason.HOLDOUT,
        None,
    )
    assert decision.progress == FlowProgress()  # it is no first email


def test_email_steps_that_reach_the_consent_decision_count_toward_first_email_only() -> None:
    policy = _policy(consent="first_email_only")
    first = _decide(policy, 0)
    assert (first.runs, first.consent, first.progress) == (
        True,
        Consent.FIRST_EMAIL,
        FlowProgress(emails_offered=1),
    )
    second = _decide(policy, 1, progress=first.progress)
    assert (second.reason, second.consent) == (NotSentReason.NO_CONSENT, Consent.REFUSED)
    assert second.progress == FlowProgress(emails_offered=2)
    # A refusal keeps the consent it decided; an unsubscribe is recorded with it too.
    gone = _decide(policy, 0, progress=FlowProgress(unsubscribed=True))
    assert (gone.reason, gone.consent) == (NotSentReason.UNSUBSCRIBED, Consent.FIRST_EMAIL)
    assert gone.progress == FlowProgress(emails_offered=1, unsubscribed=True)


def test_a_staff_step_has_no_consent_and_ignores_an_unsubscribe() -> None:
    progress = FlowProgress(emails_offered=2, unsubscribed=True)
    task = _decide(_policy(consent="subscribers_only"), 2, progress=progress)
    assert (task.runs, task.consent, task.progress) == (True, None, progress)
    assert task.not_sent_reason is None


def test_decide_step_is_a_function_of_its_inputs() -> None:
    policy = _policy(consent="first_email_only")
    progress = FlowProgress()
    assert _decide(policy, 1, progress=progress) == _decide(policy, 1, progress=progress)
    assert progress == FlowProgress()


def test_plan_threads_the_progress_and_words_each_outcome() -> None:
    policy = _policy(consent="first_email_only")
    steps = plan(policy, sample_checkout(), ABANDONED, ABANDONED)
    assert [(s.outcome, s.consent) for s in steps] == [
        ("send", Consent.FIRST_EMAIL),
        ("skip: no_consent", Consent.REFUSED),
        ("run", None),
    ]


def test_plan_runs_the_steps_in_order_behind_a_send_window() -> None:
    """Step 1 (11:00) waits for the 16:00 opening; step 2 (13:00) and the task (14:00) are due
    meanwhile and run right after it, as the flow runs them."""
    policy = _policy(send_window={"start": "16:00", "end": "18:00"})
    steps = plan(policy, sample_checkout(), ABANDONED, ABANDONED)
    opening = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)
    assert [s.due for s in steps] == [opening, opening, opening]
    assert [s.shifted_by_send_window for s in steps] == [True, True, False]


def test_plan_rules_out_a_stale_reports_steps_at_the_report() -> None:
    """The flow does not wait for them, not even for the send window."""
    policy = _policy(max_age="1d", send_window={"start": "16:00", "end": "18:00"})
    reported = ABANDONED + timedelta(days=2)
    steps = plan(policy, sample_checkout(), ABANDONED, reported)
    assert [s.due for s in steps] == [reported] * 3
    assert [s.outcome for s in steps] == ["skip: stale_report"] * 3
