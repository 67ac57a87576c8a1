"""Bounce and complaint figures per step: in the stats (store.stats), `checkout-recovery stats`
(tables and --json) and the dashboard's overview, on SQLite and PostgreSQL. Each email counts once
per kind however many providers reported it; the rates are per email sent of the step."""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import httpx
import pytest
from temporalio.client import Client
from typer.testing import CliRunner

from cli.main import app as cli
from domain.access import Scope
from domain.activity import ActivityEntry, ActivityType
from domain.feedback import FeedbackKind, FeedbackReport
from domain.flow import step_key, workflow_id_for
from service.checkouts import CheckoutService
from store.api_keys import ApiKeyStore
from store.feedback import FeedbackStore
from store.sql import SqlStore
from store.stats import checkout_stats
from tests.support import default_policy_any_hour, engine_settings, sample_checkout
from workers.api_server import build_app

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


async def _sent(store: SqlStore, name: str, steps: int = 1, shop_id: str = "default") -> str:
    """A checkout of its own buyer whose first `steps` emails went out; step 1's Message-ID."""
    checkout = sample_checkout(
        id=f"{name}-id",
        createdDate=NOW.isoformat(),
        buyerInfo={"email": f"{name}@example.com", "visitorId": name},
    )
    await store.save_reported(checkout, NOW, shop_id=shop_id)
    for step in range(1, steps + 1):
        key = step_key(workflow_id_for(f"{name}-id"), step - 1)
        assert (await store.begin_send(f"{name}-id", key, f"<{name}.{step}@x>", NOW)).claim
        entry = ActivityEntry(type=ActivityType.EMAIL_SENT, created_date=NOW, step=step)
        await store.confirm_send(key, f"{name}-id", entry)
    return f"{name}.1@x"


def _said(provider: str, kind: FeedbackKind, name: str, message_id: str) -> FeedbackReport:
    return FeedbackReport(
        provider=provider,
        kind=kind,
        email=f"{name}@example.com",
        message_id=message_id,
        occurred_at=NOW + timedelta(hours=1),
    )


@pytest.fixture
async def reported(store: SqlStore) -> SqlStore:
    bounced = await _sent(store, "bounced")
    complained = await _sent(store, "complained")
    soft = await _sent(store, "soft")
    await _sent(store, "fine", steps=2)
    elsewhere = await _sent(store, "elsewhere", shop_id="shop-b")
    await FeedbackStore(store).record_feedback(
        [
            _said("ses", FeedbackKind.HARD_BOUNCE, "bounced", bounced),
            # Two providers told of the same bounce (a relay behind a relay): one bounce.
            _said("generic", FeedbackKind.HARD_BOUNCE, "bounced", bounced),
            _said("ses", FeedbackKind.COMPLAINT, "complained", complained),
            _said("ses", FeedbackKind.SOFT_BOUNCE, "soft", soft),
            _said("ses", FeedbackKind.HARD_BOUNCE, "elsewhere", elsewhere),  # another shop's
        ],
        NOW + timedelta(hours=2),
    )
    return store


async def test_each_step_counts_its_bounces_and_complaints(reported: SqlStore):
    stats = await checkout_stats(reported, None, None)

    first, second = stats.steps
    assert (first.emails_sent, first.hard_bounces, first.complaints, first.soft_bounces) == (
        4,
        1,
        1,
        1,
    )
    assert (first.bounce_rate, first.complaint_rate) == (0.25, 0.25)
    assert (second.emails_sent, second.hard_bounces, second.bounce_rate) == (1, 0, 0.0)
    other = await checkout_stats(reported, None, None, shop_id="shop-b")
    assert (other.steps[0].hard_bounces, other.steps[0].bounce_rate) == (1, 1.0)


def test_the_stats_command_shows_them(reported: SqlStore, database_url: str, tmp_path: Path):
    env = {
        "CHECKOUT_RECOVERY_DATABASE_URL": database_url,
        "CHECKOUT_RECOVERY_DATA_DIR": str(tmp_path),
    }
    runner = CliRunner()

    document = runner.invoke(cli, ["stats", "--json"], env=env)
    table = runner.invoke(cli, ["stats"], env=env)

    assert document.exit_code == 0, document.output
    step = json.loads(document.stdout)["steps"][0]
    assert {k: step[k] for k in ("hardBounces", "softBounces", "complaints")} == {
        "hardBounces": 1,
        "softBounces": 1,
        "complaints": 1,
    }
    assert (step["bounceRate"], step["complaintRate"]) == (0.25, 0.25)
    assert table.exit_code == 0, table.output
    assert "Deliverability per step" in table.stdout
    deliverability = table.stdout[table.stdout.index("Deliverability per step") :]
    row = next(line for line in deliverability.splitlines() if re.match(r"\W*1\W+4\W", line))
    assert re.findall(r"[\d.]+%?", row) == ["1", "4", "1", "25.00%", "1", "25.00%", "1"]


async def test_the_dashboard_overview_shows_them(reported: SqlStore, tmp_path: Path):
    _, key = await ApiKeyStore(reported.engine).create("ops", frozenset({Scope.READ}))
    settings = engine_settings(0, data_dir=tmp_path)
    # The overview reads the store only: no Temporal client is asked for.
    service = CheckoutService(cast(Client, None), reported, settings.task_queue)
    api = build_app(settings, service, reported, default_policy_any_hour())
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="https://api.test") as http:
        login = await http.post(
            "/dashboard/login",
            content=f"api_key={key}&next=/dashboard",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert login.status_code == 303, login.text
        page = await http.get("/dashboard")

    assert page.status_code == 200
    table = page.text[page.text.index('<table id="deliverability">') :]
    table = table[: table.index("</table>")]
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in table.split("<tr>")[2:]]
    assert cells == [
        ["1", "4", "1", "25.00%", "1", "25.00%", "1"],
        ["2", "1", "0", "0.00%", "0", "0.00%", "0"],
    ]
