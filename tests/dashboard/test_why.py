"""See why, in headless Chromium against a running stack: an operator finds a checkout by email
and reads, on its page, that step 2 was not sent and why, the next step with its due time, the
flow's state and its workflow history summary, and opens the first email as the buyer got it."""

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, expect
from temporalio.testing import WorkflowEnvironment

from devstack.mailbox import read_mailbox
from domain.activity import ActivityType
from domain.sent_email import read_email
from store.sql import SqlStore
from tests.dashboard.stack import DashboardStack
from tests.dashboard.why_stack import log_in, report, why_stack
from tests.support import REPO, eventually

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SCREENSHOT = REPO / "docs" / "images" / "dashboard-why.png"
EMAIL_SCREENSHOT = REPO / "docs" / "images" / "dashboard-email.png"


@pytest.fixture
async def dashboard(
    dev_server_env: WorkflowEnvironment, store: SqlStore, tmp_path: Path
) -> AsyncIterator[DashboardStack]:
    async with why_stack(dev_server_env.client, store, tmp_path) as running:
        yield running


async def _step_2_recorded(store: SqlStore, checkout_id: str) -> bool:
    checkout = await store.get(checkout_id)
    return checkout is not None and any(
        a.type is ActivityType.EMAIL_NOT_SENT and a.step == 2 for a in checkout.activities
    )


async def test_the_checkout_page_says_what_happened_why_and_what_comes_next(
    context: BrowserContext, dashboard: DashboardStack, screenshots: Path
) -> None:
    ada = await report(dashboard, "ada", buyerTimeZone="Europe/Paris")
    await report(dashboard, "bob")
    await eventually(lambda: _step_2_recorded(dashboard.store, ada), what="step 2's entry")

    page = await context.new_page()
    await log_in(page, dashboard.read_key)
    await page.goto("/dashboard/checkouts")
    await page.get_by_label("Buyer email").fill("ada@")
    await page.get_by_role("button", name="Filter").click()
    rows = page.locator("#checkouts tr:has(td)")
    await expect(rows).to_have_count(1)
    await rows.first.get_by_role("link", name=ada).click()
    await expect(page.get_by_role("heading", name=f"Checkout {ada}")).to_be_visible()

    # Step 1 went out, with the consent it was sent under; step 2 did not, and the page says why.
    sent = page.locator("#timeline li.EMAIL_SENT")
    await expect(sent).to_contain_text("step 1")
    await expect(sent.locator(".consent")).to_contain_text("consent: ")
    not_sent = page.locator("#timeline li.EMAIL_NOT_SENT")
    await expect(not_sent).to_contain_text("step 2")
    await expect(not_sent.locator(".reason")).to_have_text(
        "reason: condition_failed:min_total: the step's conditions did not hold"
    )

    # The flow runs, and its next step is the hour-away email, due in UTC and in Paris.
    await expect(page.locator("#flow-state")).to_contain_text("running")
    upcoming = page.locator("#next-step")
    await expect(upcoming).to_contain_text("step 3: email last_chance")
    await expect(upcoming.locator(".due-utc")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
    )
    await expect(upcoming.locator(".due-local")).to_contain_text("Europe/Paris")
    await expect(upcoming.locator(".outcome")).to_have_text("send")

    # The history summary, as `checkouts history` prints it: timers and activities, no payloads.
    history = page.locator("#history")
    await expect(history).to_contain_text("workflow started")
    await expect(history).to_contain_text("timer fired")
    await expect(history).to_contain_text("activity completed")
    await expect(history).not_to_contain_text("ada@example.com")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOT, full_page=True)
    await page.screenshot(path=screenshots / "checkout-why.png", full_page=True)

    # The first email, as the buyer received it: what the SMTP server got, in a sandboxed frame.
    (received,) = [
        m for m in read_mailbox(dashboard.maildir) if "ada@example.com" in m.message["To"]
    ]
    buyer_got = read_email(received.message)
    await sent.get_by_role("link", name="Open the email").click()
    await expect(page).to_have_url(f"{dashboard.base_url}/dashboard/checkouts/{ada}/emails/1")
    mail = page.locator("article.mail")
    await expect(mail.locator(".subject")).to_have_text(buyer_got.subject)
    await expect(mail.locator(".to")).to_have_text(buyer_got.to)
    assert await mail.locator("iframe").get_attribute("sandbox") == ""
    await expect(page.frame_locator("article.mail iframe").locator("body")).to_contain_text(
        "We kept them for you, and you can pick up right where you stopped."
    )
    await expect(mail.locator(".text-part")).to_contain_text("Complete your purchase here:")
    assert await dashboard.store.sent_emails(ada) == {1: buyer_got}
    EMAIL_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=EMAIL_SCREENSHOT, full_page=True)
    await page.screenshot(path=screenshots / "checkout-email.png", full_page=True)
