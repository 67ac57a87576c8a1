"""Find fast, in headless Chromium: the checkout list filters by the shop's checkoutId and cartId,
status and a date range, and a filtered page's URL, opened in a new page, shows the same rows."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect
from temporalio.testing import WorkflowEnvironment

from store.sql import SqlStore
from tests.dashboard.stack import DashboardStack
from tests.dashboard.why_stack import API, log_in, report, why_stack

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def dashboard(
    dev_server_env: WorkflowEnvironment, store: SqlStore, tmp_path: Path
) -> AsyncIterator[DashboardStack]:
    async with why_stack(dev_server_env.client, store, tmp_path) as running:
        yield running


async def _filter(page: Page, **fields: str) -> None:
    await page.goto("/dashboard/checkouts")
    for label, value in fields.items():
        await page.get_by_label(label, exact=True).fill(value)
    await page.get_by_role("button", name="Filter").click()


async def test_the_list_filters_by_shop_ids_status_and_dates_and_its_url_is_a_link(
    context: BrowserContext, dashboard: DashboardStack, screenshots: Path
) -> None:
    ada = await report(dashboard, "ada", checkoutId="co-find-ada", cartId="cart-find-ada")
    bob = await report(dashboard, "bob", checkoutId="co-find-bob", cartId="cart-find-bob")
    eve = await report(dashboard, "eve", cartId="cart-find-eve")
    async with httpx.AsyncClient(base_url=dashboard.base_url) as http:
        answer = await http.post(f"{API}/{bob}/recover", json={}, headers=dashboard.as_manager())
        assert answer.status_code == 200, answer.text
    today = datetime.now(UTC).date()

    page = await context.new_page()
    await log_in(page, dashboard.read_key)
    rows = page.locator("#checkouts tr:has(td)")

    await _filter(page, **{"Shop checkoutId": "co-find-ada"})
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(ada)
    await _filter(page, **{"Shop cartId": "cart-find-eve"})
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(eve)

    await page.goto("/dashboard/checkouts")
    await page.get_by_label("Status").select_option("RECOVERED")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(bob)

    # A date range: today holds all three; from tomorrow on, none.
    await page.goto("/dashboard/checkouts")
    await page.get_by_label("Abandoned since").fill(today.isoformat())
    await page.get_by_label("Abandoned until").fill(today.isoformat())
    await page.get_by_label("Status").select_option("ABANDONED")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(2)
    await page.screenshot(path=screenshots / "1-filtered.png", full_page=True)

    # The filtered page's URL, opened afresh, shows the same rows and the same form.
    shared = page.url
    assert f"since={today.isoformat()}" in shared and "status=ABANDONED" in shared
    other = await context.new_page()
    await other.goto(shared)
    again = other.locator("#checkouts tr:has(td)")
    await expect(again).to_have_count(2)

    # The same checkouts (their flows go on sending, so a row's latest entry may have moved on).
    def shown(texts: list[str]) -> list[str]:
        return sorted(c for c in (ada, bob, eve) for text in texts if c in text)

    assert (
        shown(await again.all_inner_texts())
        == shown(await rows.all_inner_texts())
        == sorted([ada, eve])
    )
    await expect(other.get_by_label("Abandoned until")).to_have_value(today.isoformat())
    await expect(other.get_by_label("Status")).to_have_value("ABANDONED")

    tomorrow = (today + timedelta(days=1)).isoformat()
    await _filter(page, **{"Abandoned since": tomorrow})
    await expect(rows).to_have_count(0)
    await expect(page.locator("main")).to_contain_text("No checkout matches.")

    # Bad input: a clear message, not a server error.
    opened = await page.goto(f"/dashboard/checkouts?since={tomorrow}&until={today}&status=LOST")
    assert opened is not None and opened.status == 400
    alerts = page.get_by_role("alert")
    await expect(alerts).to_have_text(
        ["status must be one of ABANDONED, RECOVERED", "until: must not be before since"]
    )
