"""The stats figures on a seeded store, on SQLite and PostgreSQL alike."""

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from domain.activity import ActivityEntry, ActivityType
from domain.durations import parse_moment
from store.sql import SqlStore
from store.stats import DayStats, checkout_stats
from tests.support import sample_checkout

MARCH_1 = datetime(2025, 3, 1, tzinfo=UTC)
WINDOW = (MARCH_1, datetime(2025, 3, 5, tzinfo=UTC))


async def _seed(
    store: SqlStore,
    checkout_id: str,
    created: datetime,
    amount: str,
    currency: str,
    entries: list[tuple[int, ActivityType, str | None]],
    recovered: datetime | None = None,
    holdout: bool = False,
) -> None:
    checkout = sample_checkout(
        id=checkout_id,
        createdDate=created.isoformat(),
        currency=currency,
        totalPrice={"amount": amount},
        buyerInfo={"email": f"{checkout_id}@example.com", "visitorId": checkout_id},
    )
    await store.save_reported(checkout, created, holdout=holdout)
    for step, kind, reason in entries:
        at = created + timedelta(minutes=10 * step)
        entry = ActivityEntry(type=kind, created_date=at, step=step, reason=reason)
        await store.record_activity(
            checkout_id, f"abandoned-checkout-{checkout_id}/step-{step}", entry
        )
    if recovered is not None:
        assert await store.mark_recovered(checkout_id, recovered, "order-1")


@pytest.fixture
async def seeded(store: SqlStore) -> SqlStore:
    sent, not_sent = ActivityType.EMAIL_SENT, ActivityType.EMAIL_NOT_SENT
    at = MARCH_1.replace
    # In the window: two on March 1 (one just before midnight), one on the 2nd, one on the 4th.
    await _seed(
        store,
        "c1",
        at(hour=10),
        "89.90",
        "EUR",
        [(1, sent, None), (2, not_sent, "recovered")],
        recovered=at(hour=12),
    )
    await _seed(
        store,
        "c2",
        at(hour=23, minute=30),
        "10.05",
        "USD",
        [(1, sent, None), (2, sent, None), (3, ActivityType.TASK_CREATED, None)],
        recovered=at(day=3, hour=9),
    )
    await _seed(
        store,
        "c3",
        at(day=2, minute=15),
        "0.10",
        "EUR",
        [
            (1, not_sent, "condition_failed:min_total,languages"),
            (2, ActivityType.NOTIFICATION_SENT, None),
        ],
        holdout=True,
    )
    # Stopped without a recovery: counted apart, by reason, and not as recovered.
    assert await store.stop("c3", at(day=2, hour=1))
    await _seed(
        store,
        "c4",
        at(day=4, hour=8),
        "100.20",
        "EUR",
        [(1, not_sent, "unsubscribed")],
        recovered=at(day=4, hour=9),
    )
    # Erased checkouts stay in the figures (their anonymised row is kept for this).
    assert await store.erase("c4", at(day=4, hour=10))
    # Outside the window: before it, and exactly at its (exclusive) end.
    await _seed(
        store,
        "c5",
        datetime(2025, 2, 27, tzinfo=UTC),
        "999.00",
        "USD",
        [(1, sent, None)],
        recovered=at(hour=1),
    )
    await _seed(store, "c6", WINDOW[1], "5.00", "EUR", [(1, sent, None)])
    return store


async def test_figures_of_the_checkouts_abandoned_in_the_window(seeded: SqlStore) -> None:
    stats = await checkout_stats(seeded, *WINDOW)

    assert (stats.abandoned, stats.recovered) == (4, 3)
    assert stats.recovery_rate == 0.75
    # Exact decimals: 89.90 + 100.20 as floats would be 190.10000000000002.
    assert stats.recovered_revenue == {"EUR": Decimal("190.10"), "USD": Decimal("10.05")}
    assert stats.emails_sent == 3
    assert stats.emails_not_sent == {"condition_failed": 1, "recovered": 1, "unsubscribed": 1}
    figures = [
        (s.step, s.emails_sent, s.emails_not_sent, s.notifications_sent, s.tasks_created)
        for s in stats.steps
    ]
    assert figures == [
        (1, 2, {"condition_failed": 1, "unsubscribed": 1}, 0, 0),
        (2, 1, {"recovered": 1}, 1, 0),
        (3, 0, {}, 0, 1),
    ]
    # c1 and c2 came back within 3 days of an email (assisted); c4 had none (organic).
    attributed = [(s.step, s.recoveries_attributed, s.recovered_revenue) for s in stats.steps]
    assert attributed == [
        (1, {"assisted": 1}, {"EUR": Decimal("89.90")}),
        (2, {"assisted": 1}, {"USD": Decimal("10.05")}),
        (3, {}, {}),
    ]
    assert stats.organic_recoveries == 1
    assert stats.stopped == {"cancelled": 1}
    # c3 is the holdout: none of it recovered, all of the rest did.
    assert (stats.holdout.abandoned, stats.holdout.recovered) == (1, 0)
    assert (stats.treated.abandoned, stats.treated.recovered) == (3, 3)
    assert stats.lift == 1.0
    # UTC days, March 3 (nothing abandoned) included; the day the window ends on is not.
    assert stats.daily == [
        DayStats(day=date(2025, 3, 1), abandoned=2, recovered=2),
        DayStats(day=date(2025, 3, 2), abandoned=1, recovered=0),
        DayStats(day=date(2025, 3, 3), abandoned=0, recovered=0),
        DayStats(day=date(2025, 3, 4), abandoned=1, recovered=1),
    ]


async def test_open_window_counts_everything(seeded: SqlStore) -> None:
    stats = await checkout_stats(seeded.engine, None, None)

    assert (stats.abandoned, stats.recovered) == (6, 4)
    assert stats.recovered_revenue == {"EUR": Decimal("190.10"), "USD": Decimal("1009.05")}
    assert stats.emails_sent == 5
    assert stats.daily[0].day == date(2025, 2, 27)
    assert stats.daily[-1] == DayStats(day=date(2025, 3, 5), abandoned=1, recovered=0)
    assert len(stats.daily) == 7


async def test_an_empty_window(store: SqlStore) -> None:
    stats = await checkout_stats(store, *WINDOW)

    assert (stats.abandoned, stats.recovered, stats.recovery_rate) == (0, 0, None)
    assert stats.recovered_revenue == {} and stats.steps == [] and stats.emails_not_sent == {}
    assert [d.abandoned for d in stats.daily] == [0, 0, 0, 0]


def test_the_stats_command_prints_one_json_document(
    seeded: SqlStore, database_url: str, tmp_path: Any
) -> None:
    env = {
        "CHECKOUT_RECOVERY_DATABASE_URL": database_url,
        "CHECKOUT_RECOVERY_DATA_DIR": str(tmp_path),
    }
    runner = CliRunner()

    result = runner.invoke(
        app, ["stats", "--since", "2025-03-01", "--until", "2025-03-05", "--json"], env=env
    )

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["abandoned"] == 4 and document["recovered"] == 3
    assert document["recoveryRate"] == 0.75
    assert document["recoveredRevenue"] == {"EUR": "190.10", "USD": "10.05"}
    assert document["emailsNotSent"] == {"condition_failed": 1, "recovered": 1, "unsubscribed": 1}
    assert document["steps"][0] == {
        "step": 1,
        "emailsSent": 2,
        "emailsNotSent": {"condition_failed": 1, "unsubscribed": 1},
        "notificationsSent": 0,
        "tasksCreated": 0,
        "recoveriesAttributed": {"assisted": 1},
        "recoveredRevenue": {"EUR": "89.90"},
        # No relay reported on these emails (tests/feedback_effects/test_feedback_stats.py).
        "hardBounces": 0,
        "softBounces": 0,
        "complaints": 0,
        "bounceRate": 0.0,
        "complaintRate": 0.0,
    }
    assert document["lift"] == 1.0 and document["holdout"] == {"abandoned": 1, "recovered": 0}
    assert document["daily"][0] == {"day": "2025-03-01", "abandoned": 2, "recovered": 2}
    assert (
        document["since"] == "2025-03-01T00:00:00Z" and document["until"] == "2025-03-05T00:00:00Z"
    )

    table = runner.invoke(app, ["stats", "--since", "2025-03-01", "--until", "2025-03-05"], env=env)
    assert table.exit_code == 0, table.output
    assert "recovery rate" in table.stdout and "75.0%" in table.stdout
    assert "recovered revenue EUR" in table.stdout and "190.10" in table.stdout

    bad = runner.invoke(app, ["stats", "--since", "last tuesday"], env=env)
    assert bad.exit_code == 2
    assert "neither a duration" in bad.stderr


def test_window_bounds_as_people_write_them() -> None:
    now = datetime(2025, 3, 10, 12, tzinfo=UTC)
    assert parse_moment("7d", now) == datetime(2025, 3, 3, 12, tzinfo=UTC)
    assert parse_moment("2025-03-01", now) == MARCH_1
    assert parse_moment("2025-03-01T08:00:00+01:00", now) == MARCH_1.replace(hour=7)
    with pytest.raises(ValueError, match="neither a duration"):
        parse_moment("yesterday", now)
