"""The Variants figures on a seeded store, SQLite and PostgreSQL alike, against numbers worked out
by hand; and the `stats` command's Variants section."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.dashboard.chart import daily_chart
from api.dashboard.views import page
from cli.main import app
from domain.activity import ActivityEntry, ActivityType
from store.sql import SqlStore
from store.stats import checkout_stats
from tests.support import sample_checkout

DAY = datetime(2025, 3, 1, tzinfo=UTC)
WINDOW = (DAY, DAY + timedelta(days=2))
SENT = ActivityType.EMAIL_SENT


async def _checkout(
    store: SqlStore, checkout_id: str, amount: str = "10.00", currency: str = "EUR"
) -> None:
    checkout = sample_checkout(
        id=checkout_id,
        createdDate=DAY.isoformat(),
        currency=currency,
        totalPrice={"amount": amount},
        buyerInfo={"email": f"{checkout_id}@example.com", "visitorId": checkout_id},
    )
    await store.save_reported(checkout, DAY, holdout=False)


async def _entry(
    store: SqlStore, checkout_id: str, step: int, variant: str | None, kind: ActivityType = SENT
) -> None:
    entry = ActivityEntry(
        type=kind, created_date=DAY + timedelta(hours=step), step=step, variant=variant
    )
    await store.record_activity(checkout_id, f"abandoned-checkout-{checkout_id}/step-{step}", entry)


async def _seed(store: SqlStore) -> None:
    # Step 1, variant "a": four sends.
    for name in ("a1", "a2", "a3", "a4"):
        await _checkout(store, name, amount="12.50" if name == "a2" else "10.00")
        await _entry(store, name, 1, "a")
    await store.record_click("a1", 1, DAY + timedelta(hours=1, minutes=5))
    await store.record_click("a4", 2, DAY + timedelta(hours=2, minutes=5))  # another step's link
    assert await store.mark_recovered("a1", DAY + timedelta(hours=1, minutes=30), "o-a1")
    assert await store.mark_recovered("a2", DAY + timedelta(hours=5), "o-a2")
    # Step 1, variant "b": two sends; b1 clicked and bought in USD, b2 bought before its email.
    await _checkout(store, "b1", amount="7.25", currency="USD")
    await _checkout(store, "b2")
    await _entry(store, "b1", 1, "b")
    await _entry(store, "b2", 1, "b")
    await store.record_click("b1", 1, DAY + timedelta(hours=1, minutes=1))
    assert await store.mark_recovered("b1", DAY + timedelta(hours=3), "o-b1")
    assert await store.mark_recovered("b2", DAY + timedelta(minutes=30), "o-b2")
    # Step 2 of a1, after its recovery: a send without a recovery after it.
    await _entry(store, "a1", 2, "long")
    # Not counted: a send without a variant, a not-sent entry with one, a checkout outside.
    await _checkout(store, "plain")
    await _entry(store, "plain", 1, None)
    await _checkout(store, "refused")
    await _entry(store, "refused", 1, "a", ActivityType.EMAIL_NOT_SENT)
    outside = sample_checkout(
        id="outside",
        createdDate=WINDOW[1].isoformat(),
        buyerInfo={"email": "outside@example.com", "visitorId": "outside"},
    )
    await store.save_reported(outside, WINDOW[1], holdout=False)
    await _entry(store, "outside", 1, "a")


async def test_variant_figures(store: SqlStore) -> None:
    await _seed(store)

    variants = (await checkout_stats(store, *WINDOW)).variants

    rows = [(v.step, v.variant, v.sends, v.clicks, v.recoveries) for v in variants]
    assert rows == [(1, "a", 4, 1, 2), (1, "b", 2, 1, 1), (2, "long", 1, 0, 0)]
    a, b, long = variants
    assert a.recovered_revenue == {"EUR": Decimal("22.50")}
    assert b.recovered_revenue == {"USD": Decimal("7.25")}
    assert long.recovered_revenue == {}
    # 2 of 4: Wilson centres on 1/2 with half-width 1.96/(1+z²/4)·√(1/16+z²/64) = 0.3500.
    assert (a.recovery_rate, a.recovery_rate_low, a.recovery_rate_high) == (0.5, 0.15, 0.85)
    assert a.compared_with is None and a.difference is None
    # 1 of 2 against 2 of 4: no difference, and a wide interval around it.
    assert (b.recovery_rate, b.compared_with, b.difference) == (0.5, "a", 0.0)
    # Wilson for 1 of 2 is [0.0945, 0.9055]; Newcombe's bounds are then
    # ±√((0.5 - 0.0945)² + (0.85 - 0.5)²) = ±0.5356.
    assert (b.difference_low, b.difference_high) == (-0.5356, 0.5356)
    # Alone on its step: no comparison; 0 of 1 gives [0, 0.7935] (z²/(1+z²)).
    assert (long.recovery_rate, long.recovery_rate_low, long.recovery_rate_high) == (
        0.0,
        0.0,
        0.7935,
    )
    assert long.compared_with is None


async def test_no_variants_no_section(store: SqlStore) -> None:
    await _checkout(store, "plain")
    await _entry(store, "plain", 1, None)
    stats = await checkout_stats(store, *WINDOW)
    assert stats.variants == [] and stats.to_json_dict()["variants"] == []


@pytest.fixture
async def seeded(store: SqlStore) -> SqlStore:
    await _seed(store)
    return store


def test_the_stats_command_shows_variants(
    seeded: SqlStore, database_url: str, tmp_path: Path
) -> None:
    env = {
        "CHECKOUT_RECOVERY_DATABASE_URL": database_url,
        "CHECKOUT_RECOVERY_DATA_DIR": str(tmp_path),
        "COLUMNS": "220",
    }
    runner = CliRunner()
    window = ["--since", "2025-03-01", "--until", "2025-03-03"]

    result = runner.invoke(app, ["stats", *window, "--json"], env=env)

    assert result.exit_code == 0, result.output
    first, second, _ = json.loads(result.stdout)["variants"]
    assert first == {
        "step": 1,
        "variant": "a",
        "sends": 4,
        "clicks": 1,
        "recoveries": 2,
        "recoveredRevenue": {"EUR": "22.50"},
        "recoveryRate": 0.5,
        "recoveryRateLow": 0.15,
        "recoveryRateHigh": 0.85,
        "comparedWith": None,
        "difference": None,
        "differenceLow": None,
        "differenceHigh": None,
    }
    assert second["comparedWith"] == "a" and second["recoveredRevenue"] == {"USD": "7.25"}

    table = runner.invoke(app, ["stats", *window], env=env)
    assert table.exit_code == 0, table.output
    assert "Variants" in table.stdout
    assert "50.0% (15.0%-85.0%)" in table.stdout
    assert "+0.0 points" in table.stdout and "vs a" in table.stdout


async def test_the_dashboard_stats_page_shows_variants(store: SqlStore) -> None:
    await _seed(store)
    figures = await checkout_stats(store, *WINDOW)
    chart = daily_chart(figures.daily)

    html = page("overview.html", stats=figures, chart=chart, first=DAY.date(), last=DAY.date())
    text = " ".join(bytes(html.body).decode().split())

    assert '<h2>Variants</h2> <table id="variants">' in text
    assert (
        '<td>1</td> <td>b</td> <td class="num">2</td> <td class="num">1</td> <td class="num">1</td>'
        " <td>7.25 USD</td> <td>50.0% (9.4\N{EN DASH}90.5%)</td> <td>+0.0 points (-53.6 to +53.6) vs a</td>"
    ) in text
    # A window with no variant sends: no section.
    empty = await checkout_stats(
        store, WINDOW[1] + timedelta(days=1), WINDOW[1] + timedelta(days=2)
    )
    html = page("overview.html", stats=empty, chart=None, first=DAY.date(), last=DAY.date())
    assert "<h2>Variants</h2>" not in bytes(html.body).decode()
