"""The pure policy decisions: send windows in the buyer's zone, conditions, consent, holdout."""

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from domain.policy import SendWindow, StepConditions
from domain.schedule import Consent, consent_decision, failed_conditions, in_holdout, next_send_time
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
