"""`checkouts show`'s next step is the one `policy check` plans: due time and what it will do."""

from datetime import UTC, datetime, timedelta

from domain.activity import ActivityEntry, ActivityType
from domain.policy import parse_policy
from service.flow_view import next_step
from tests.support import sample_checkout

ABANDONED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _policy(**keys: object):
    steps = [
        {"delay": "1h", "action": "email", "template": "reminder"},
        {"delay": "2h", "action": "email", "template": "last_chance", **keys},
    ]
    return parse_policy({"name": "t", "steps": steps, "frequency_cap": {"window": "0s"}}, "t")


def _checkout(reported: datetime, *done: int):
    entries = [ActivityEntry(type=ActivityType.SCHEDULED, created_date=reported)]
    entries += [
        ActivityEntry(type=ActivityType.EMAIL_SENT, created_date=reported, step=step)
        for step in done
    ]
    return sample_checkout().model_copy(
        update={"id": "c-next", "created_date": ABANDONED, "activities": entries}
    )


def test_the_next_step_says_it_will_skip_for_its_conditions():
    upcoming = next_step(
        _policy(conditions={"min_total": "1000.00"}), _checkout(ABANDONED, 1), ABANDONED
    )
    assert upcoming is not None
    assert (upcoming.number, upcoming.outcome) == (2, "skip: condition_failed:min_total")
    assert upcoming.due == ABANDONED + timedelta(hours=2)


def test_a_step_overdue_at_the_report_is_due_at_the_report():
    reported = ABANDONED + timedelta(hours=5)
    upcoming = next_step(_policy(), _checkout(reported), ABANDONED)
    assert upcoming is not None
    assert (upcoming.number, upcoming.outcome, upcoming.due) == (1, "send", reported)


def test_no_next_step_once_every_step_ran():
    assert next_step(_policy(), _checkout(ABANDONED, 1, 2), ABANDONED) is None
