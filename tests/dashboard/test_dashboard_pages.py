"""The dashboard in headless Chromium against a running stack: what an operator sees and does."""

from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect

from api.dashboard.session import COOKIE
from devstack.mailbox import read_mailbox
from domain.activity import ActivityType
from store.sql import SqlStore
from tests.dashboard.stack import DashboardStack
from tests.support import eventually, sample_checkout_data

# The browser is what is under test here; one database is enough (stats run on both elsewhere).
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

API = "/ecom/v1/abandoned-checkout"


async def _log_in(page: Page, key: str) -> None:
    await page.goto("/dashboard/login")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Log in").click()


async def test_login_admits_a_read_key_only_and_logout_ends_the_session(
    context: BrowserContext, dashboard: DashboardStack, screenshots: Path
) -> None:
    page = await context.new_page()
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))

    # Not logged in: any page leads to the login form, which remembers where the operator went.
    await page.goto("/dashboard/checkouts?status=RECOVERED")
    await expect(page).to_have_url(
        f"{dashboard.base_url}/dashboard/login?next=/dashboard/checkouts%3Fstatus%3DRECOVERED"
    )
    await expect(page.get_by_label("API key")).to_be_visible()
    await page.screenshot(path=screenshots / "1-login.png")

    await page.get_by_label("API key").fill("crk_0123456789abcdef_" + "x" * 43)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not valid")
    await page.screenshot(path=screenshots / "2-wrong-key.png")
    assert await context.cookies() == []

    await page.get_by_label("API key").fill(dashboard.read_key)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{dashboard.base_url}/dashboard/checkouts?status=RECOVERED")
    await expect(page.get_by_role("heading", name="Checkouts")).to_be_visible()
    await expect(page.locator("header")).to_contain_text("dashboard reader")

    (cookie,) = await context.cookies()
    assert cookie["name"] == COOKIE
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/dashboard"
    assert dashboard.read_key not in cookie["value"]  # encrypted, not merely signed
    assert not any(dashboard.read_key in url for url in urls)

    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(f"{dashboard.base_url}/dashboard/login")
    await page.goto("/dashboard")
    await expect(page.get_by_label("API key")).to_be_visible()


async def test_stats_list_checkout_tasks_and_mailbox(
    context: BrowserContext, dashboard: DashboardStack, screenshots: Path
) -> None:
    waiting = await _report(dashboard, "ada")
    recovered = await _report(dashboard, "bob")
    # No address to mail: its email step records EMAIL_NOT_SENT with the reason no_email.
    unreachable = await _report(dashboard, "carl", buyerInfo={"visitorId": "visitor-carl"})
    async with httpx.AsyncClient(base_url=dashboard.base_url) as http:
        answer = await http.post(
            f"{API}/{recovered}/recover",
            json={},
            headers={"Authorization": f"Bearer {dashboard.manage_key}"},
        )
        assert answer.status_code == 200, answer.text
    for checkout_id in (waiting, unreachable):
        await eventually(
            partial(_has_entry, dashboard.store, checkout_id, ActivityType.TASK_CREATED),
            what="the email step and the staff task",
        )
    assert len(read_mailbox(dashboard.maildir)) == 1

    page = await context.new_page()
    await _log_in(page, dashboard.read_key)

    # Stats: today's three checkouts, one of them recovered, and a bar for today in the chart.
    await expect(page).to_have_url(f"{dashboard.base_url}/dashboard")
    await expect(page.locator("#abandoned .value")).to_have_text("3")
    await expect(page.locator("#recovered .value")).to_have_text("1")
    await expect(page.locator("#rate .value")).to_have_text("33.3%")
    await expect(page.locator("#emails-sent .value")).to_have_text("1")
    await expect(page.locator("#not-sent td")).to_have_text(["no_email", "1"])
    await expect(page.locator("#steps tr:has(td)").first).to_contain_text("no_email 1")
    await expect(page.locator(".revenue .value")).to_have_text("89.90")
    await expect(page.locator("svg.chart g.day")).to_have_count(30)
    today = await page.locator("svg.chart g.day title").last.text_content()
    assert today is not None and today.endswith("3 abandoned, 1 recovered")
    await page.screenshot(path=screenshots / "1-stats.png", full_page=True)

    # The list, then filtered by status.
    await page.get_by_role("link", name="Checkouts").click()
    rows = page.locator("#checkouts tr:has(td)")
    await expect(rows).to_have_count(3)
    await page.get_by_label("Status").select_option("RECOVERED")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(recovered)
    await expect(rows.first).to_contain_text("bob@example.com")
    await page.screenshot(path=screenshots / "2-list-recovered.png", full_page=True)
    await page.get_by_label("Status").select_option("ABANDONED")
    await page.get_by_label("Buyer email").fill("ada@")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(waiting)

    # A checkout's page: its timeline and its flow in the Temporal UI.
    await rows.first.get_by_role("link", name=waiting).click()
    await expect(page.get_by_role("heading", name=f"Checkout {waiting}")).to_be_visible()
    timeline = page.locator("#timeline li strong")
    await expect(timeline).to_have_text(["SCHEDULED", "EMAIL_SENT", "TASK_CREATED"])
    await expect(page.locator("#timeline li").nth(1)).to_contain_text("step 1")
    await expect(page.locator("#workflow-link")).to_have_attribute(
        "href",
        f"http://temporal-ui.test:8233/namespaces/default/workflows/abandoned-checkout-{waiting}",
    )
    await page.screenshot(path=screenshots / "3-checkout.png", full_page=True)

    await page.goto(f"/dashboard/checkouts/{recovered}")
    await expect(page.locator("#timeline li strong").last).to_have_text("RECOVERED")
    await page.goto(f"/dashboard/checkouts/{unreachable}")
    not_sent = page.locator("#timeline li.EMAIL_NOT_SENT")
    await expect(not_sent).to_contain_text("step 1")
    await expect(not_sent.locator(".reason")).to_have_text(
        "reason: no_email: the buyer gave no email address"
    )

    # The staff task the flow created.
    await page.get_by_role("link", name="Open tasks").click()
    await expect(page.locator("#tasks tr:has(td)")).to_have_count(2)
    await expect(page.locator("#tasks")).to_contain_text(waiting)
    await expect(page.locator("#tasks")).to_contain_text("sales")
    await page.screenshot(path=screenshots / "4-tasks.png", full_page=True)

    # The email as the buyer sees it, in a sandboxed frame.
    await page.get_by_role("link", name="Mailbox").click()
    mail = page.locator("article.mail")
    await expect(mail).to_have_count(1)
    await expect(mail.locator(".subject")).to_contain_text("Ada, you left something in your cart")
    await expect(mail.locator(".to")).to_contain_text("ada@example.com")
    assert await mail.locator("iframe").get_attribute("sandbox") == ""
    await expect(page.frame_locator("article.mail iframe").locator("body")).to_contain_text(
        "Linen shirt"
    )
    await page.screenshot(path=screenshots / "5-mailbox.png", full_page=True)

    missing = await page.goto("/dashboard/checkouts/no-such-checkout")
    assert missing is not None and missing.status == 404
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()


async def _report(dashboard: DashboardStack, name: str, **overrides: Any) -> str:
    body: dict[str, Any] = sample_checkout_data(
        buyerInfo={"email": f"{name}@example.com", "visitorId": f"visitor-{name}"},
        contactDetails={"firstName": name.title()},
    )
    body.update(overrides)
    async with httpx.AsyncClient(base_url=dashboard.base_url) as http:
        answer = await http.post(
            API, json=body, headers={"Authorization": f"Bearer {dashboard.manage_key}"}
        )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["abandonedCheckout"]["id"])


async def _has_entry(store: SqlStore, checkout_id: str, kind: ActivityType) -> bool:
    checkout = await store.get(checkout_id)
    return checkout is not None and any(a.type is kind for a in checkout.activities)
