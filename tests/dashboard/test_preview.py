"""The preview page in headless Chromium against a running stack: a manager previews a reported
checkout's first email in German and sends a test to an operator's address, which the SMTP server
gets while the checkout's timeline stays as it was; a reader sees the preview but no test form,
and its forged post is refused."""

import shutil
from functools import partial
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from api.dashboard.csrf import FIELD, CsrfTokens
from api.dashboard.session import COOKIE
from api.dashboard.views import MAILBOX
from devstack.mailbox import read_mailbox
from domain.activity import ActivityType
from store.sql import SqlStore
from tests.dashboard.stack import DashboardStack
from tests.support import REPO, eventually, sample_checkout_data
from workers.link_secret import dashboard_secret

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

API = "/ecom/v1/abandoned-checkout"
DOC_IMAGES = REPO / "docs" / "images"
OPERATOR = "ops@example.com"
GERMAN_SUBJECT = "Preview, Sie haben etwas in Ihrem Warenkorb bei Test Shop vergessen"


async def test_a_manager_previews_in_german_and_sends_a_test(
    context: BrowserContext, dashboard: DashboardStack, screenshots: Path
) -> None:
    checkout_id = await _reported(dashboard, "preview")
    before = await _timeline(dashboard.store, checkout_id)
    page = await context.new_page()
    await _log_in(page, dashboard.manage_key)

    # From the checkout's page to its preview, then step 1 in German.
    await page.goto(f"/dashboard/checkouts/{checkout_id}")
    await page.locator("#preview-link").click()
    await expect(page.get_by_role("heading", name="Preview an email step")).to_be_visible()
    await expect(page.get_by_label("Checkout id (empty: the sample)")).to_have_value(checkout_id)
    await page.get_by_label("Step").select_option("1")
    await page.get_by_label("Language").select_option("de")
    async with page.expect_response(lambda r: "/dashboard/preview?" in r.url) as answer:
        await page.get_by_role("button", name="Preview", exact=True).click()
    response = await answer.value
    assert response.status == 200
    assert response.headers["content-security-policy"] == MAILBOX  # no script source at all
    mail = page.locator("#preview article.mail")
    await expect(mail.locator(".subject")).to_have_text(GERMAN_SUBJECT)
    await expect(mail.locator(".to")).to_have_text("Preview Lovelace <preview@example.com>")
    frame = mail.locator("iframe")
    assert await frame.get_attribute("sandbox") == ""  # no permission: no script, no forms
    assert await frame.get_attribute("title") == GERMAN_SUBJECT
    await expect(page.frame_locator("#preview iframe").locator("body")).to_contain_text(
        "Hallo Preview,"
    )
    await expect(mail.locator(".text-part")).to_contain_text("Hallo Preview,")
    await _screenshot(page, screenshots, "dashboard-preview.png")

    # The buyer's address is refused; an operator's gets the test.
    form = page.locator("#test-send")
    await form.get_by_label("Send a test to").fill("PREVIEW@example.com")
    await form.get_by_role("button", name="Send me a test").click()
    await expect(page.locator("#test-error")).to_contain_text("the buyer's address")
    await form.get_by_label("Send a test to").fill(OPERATOR)
    await form.get_by_role("button", name="Send me a test").click()
    await expect(page.locator("#test-outcome")).to_contain_text("Test email sent")
    await expect(page.locator("#preview .subject")).to_have_text(GERMAN_SUBJECT)
    await page.screenshot(path=screenshots / "2-test-sent.png", full_page=True)

    tests = [m.message for m in read_mailbox(dashboard.maildir) if m.message["To"] == OPERATOR]
    assert len(tests) == 1
    assert tests[0]["Subject"].strip() == f"[Test] {GERMAN_SUBJECT}"
    assert "preview@example.com" not in tests[0].as_string()
    # Nothing recorded: the timeline and the kept copies are as they were.
    assert await _timeline(dashboard.store, checkout_id) == before
    assert set(await dashboard.store.sent_emails(checkout_id)) == {1}


async def test_a_reader_previews_but_cannot_send_a_test(
    context: BrowserContext, dashboard: DashboardStack
) -> None:
    checkout_id = await _reported(dashboard, "reader")
    page = await context.new_page()
    await _log_in(page, dashboard.read_key)
    await page.goto("/dashboard")
    await page.get_by_role("link", name="Preview").click()
    # The sample checkout, the first email step, the buyer's language.
    await expect(page.locator("#preview .to")).to_have_text("Ada Lovelace <buyer@example.com>")
    await page.goto(f"/dashboard/preview?step=1&language=fr&checkout={checkout_id}")
    await expect(page.locator("#preview .subject")).to_contain_text("Reader")
    await expect(page.locator("#test-send")).to_have_count(0)

    (cookie,) = [c for c in await context.cookies() if c["name"] == COOKIE]
    token = CsrfTokens(dashboard_secret(dashboard.settings)).for_session(cookie["value"].strip('"'))
    form: dict[str, str | float | bool] = {
        FIELD: token,
        "step": "1",
        "language": "fr",
        "checkout": checkout_id,
        "to": OPERATOR,
    }
    refused = await context.request.post(
        "/dashboard/preview/test",
        form=form,
        headers={"Origin": dashboard.base_url},
        max_redirects=0,
    )
    assert refused.status == 403
    assert "lacks the manage scope" in await refused.text()
    assert not [m for m in read_mailbox(dashboard.maildir) if m.message["To"] == OPERATOR]


async def test_a_managers_post_without_the_token_or_from_elsewhere_is_refused(
    context: BrowserContext, dashboard: DashboardStack
) -> None:
    page = await context.new_page()
    await _log_in(page, dashboard.manage_key)
    await page.goto("/dashboard/preview")
    token = await page.locator(f"#test-send input[name={FIELD}]").get_attribute("value")
    assert token
    sent: dict[str, str | float | bool] = {"step": "1", "to": OPERATOR}
    forged: list[tuple[dict[str, str | float | bool], dict[str, str]]] = [
        ({}, {"Origin": dashboard.base_url}),  # no token
        ({FIELD: token}, {"Origin": "https://evil.example"}),  # the right token, elsewhere
        ({FIELD: token}, {}),  # neither Origin nor Referer
    ]
    for fields, headers in forged:
        refused = await context.request.post(
            "/dashboard/preview/test", form=sent | fields, headers=headers, max_redirects=0
        )
        assert refused.status == 403, (fields, headers)
    assert not [m for m in read_mailbox(dashboard.maildir) if m.message["To"] == OPERATOR]
    accepted = await context.request.post(
        "/dashboard/preview/test",
        form=sent | {FIELD: token},
        headers={"Origin": dashboard.base_url},
        max_redirects=0,
    )
    assert accepted.status == 303
    assert accepted.headers["location"].endswith("outcome=test-sent")


async def _reported(dashboard: DashboardStack, name: str) -> str:
    """A reported checkout whose first email went and whose task exists: its timeline then
    stays as it is for an hour (the stack's policy)."""
    body = sample_checkout_data(
        buyerInfo={"email": f"{name}@example.com", "visitorId": f"visitor-{name}"},
        contactDetails={"firstName": name.title(), "lastName": "Lovelace"},
    )
    answer = await dashboard.http.post(API, json=body, headers=dashboard.as_manager())
    assert answer.status_code == 201, answer.text
    checkout_id = str(answer.json()["abandonedCheckout"]["id"])
    await eventually(
        partial(_has_entry, dashboard.store, checkout_id, ActivityType.TASK_CREATED),
        what="the first email and the staff task",
    )
    return checkout_id


async def _timeline(store: SqlStore, checkout_id: str) -> list[tuple[str, int | None, str]]:
    checkout = await store.get(checkout_id)
    assert checkout is not None
    return [(a.type, a.step, a.created_date.isoformat()) for a in checkout.activities]


async def _has_entry(store: SqlStore, checkout_id: str, kind: ActivityType) -> bool:
    checkout = await store.get(checkout_id)
    return checkout is not None and any(a.type is kind for a in checkout.activities)


async def _log_in(page: Page, key: str) -> None:
    await page.goto("/dashboard/login")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()


async def _screenshot(page: Page, screenshots: Path, name: str) -> None:
    """Into the test's folder, and into docs/images for the dashboard guide."""
    await page.screenshot(path=screenshots / name, full_page=True)
    DOC_IMAGES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshots / name, DOC_IMAGES / name)
