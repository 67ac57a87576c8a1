"""A checkout's page in headless Chromium against a running stack: each sent email opens as the
buyer received it (in a sandboxed frame), a send without a copy and an erased checkout say "no
copy kept"; the checkout's own staff tasks are listed with their status and handled from there;
and the checkout list filters by the reason an email was not sent."""

import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from activities.email_message import Sender, build_message
from activities.message_context import checkout_context
from activities.rendering import RenderedEmail, TemplateRenderer
from activities.sent_copy import sent_copy
from api.dashboard.views import MAILBOX
from domain.activity import ActivityEntry, ActivityType
from domain.flow import step_key, workflow_id_for
from domain.sent_email import SentEmail
from domain.task import TaskStatus
from store.sql import SqlStore
from tests.dashboard.stack import DashboardStack
from tests.dashboard.test_actions import _has_entry, _log_in, _report
from tests.support import eventually, sample_checkout

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SENT_AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _rendered_copy(checkout_id: str) -> SentEmail:
    """Step 1's reminder as the engine renders and builds it, read back as the activity does."""
    checkout = sample_checkout().model_copy(update={"id": checkout_id})
    rendered = TemplateRenderer(default_language="en").render_email(
        "reminder", "en", checkout_context(checkout, "Our Shop")
    )
    # A script the frame must never run, appended to what the template made.
    ran = '<script>document.body.insertAdjacentHTML("beforeend", "<p id=ran>ran</p>")</script>'
    html = rendered.html.replace("</body>", f"{ran}</body>")
    message = build_message(
        RenderedEmail(rendered.subject, html, rendered.text),
        sender=Sender("Our Shop <recovery@shop.example>"),
        to_address="ada@example.com",
        to_name="Ada Lovelace",
        message_id="<copy.recovery@shop.example>",
        sent_at=SENT_AT,
    )
    return sent_copy(message)


async def _sent_twice(store: SqlStore, checkout_id: str, copy: SentEmail) -> None:
    """A checkout (no flow) whose step 1 was sent with a copy kept and step 2 without one."""
    checkout = sample_checkout().model_copy(update={"id": checkout_id, "created_date": SENT_AT})
    await store.save_reported(checkout, SENT_AT)
    for step, kept in ((1, copy), (2, None)):
        key = step_key(workflow_id_for(checkout_id), step - 1)
        at = SENT_AT + timedelta(hours=step)
        assert (await store.begin_send(checkout_id, key, f"<{step}@x>", at)).claim is not None
        entry = ActivityEntry(type=ActivityType.EMAIL_SENT, created_date=at, step=step)
        await store.confirm_send(key, checkout_id, entry, copy=kept)


async def test_an_operator_opens_a_sent_email_as_the_buyer_received_it(
    context: BrowserContext, dashboard: DashboardStack, screenshots: Path
) -> None:
    checkout_id = f"copy-{uuid.uuid4().hex}"
    copy = _rendered_copy(checkout_id)
    await _sent_twice(dashboard.store, checkout_id, copy)
    page = await context.new_page()
    await _log_in(page, dashboard.read_key)
    await page.goto(f"/dashboard/checkouts/{checkout_id}")

    sent = page.locator("#timeline li.EMAIL_SENT")
    await expect(sent).to_have_count(2)
    await expect(sent.nth(1).locator(".sent-email")).to_have_text("no copy kept")
    async with page.expect_response(lambda r: r.url.endswith("/emails/1")) as answer:
        await sent.first.get_by_role("link", name="Open the email").click()
    response = await answer.value
    assert response.status == 200
    assert response.headers["content-security-policy"] == MAILBOX  # no script source at all

    mail = page.locator("article.mail")
    await expect(mail.locator(".subject")).to_have_text(copy.subject)
    await expect(mail.locator(".from")).to_have_text("Our Shop <recovery@shop.example>")
    await expect(mail.locator(".to")).to_have_text("Ada Lovelace <ada@example.com>")
    await expect(mail.locator(".date")).to_have_text("Sun, 22 Nov 2026 10:00:00 +0000")
    frame = mail.locator("iframe")
    assert await frame.get_attribute("sandbox") == ""  # no permission: no script, no forms
    # A line of each part, as the buyer got it.
    await expect(page.frame_locator("article.mail iframe").locator("body")).to_contain_text(
        "You left 3 items in your cart."
    )
    await expect(mail.locator(".text-part")).to_contain_text("Complete your purchase here:")
    email = page.frame_locator("article.mail iframe")
    await expect(email.locator("script")).to_have_count(1)  # there, and it did not run
    await expect(email.locator("#ran")).to_have_count(0)
    # The guide's picture (docs/images/dashboard-email.png) is test_why.py's, of a real send.
    await page.screenshot(path=screenshots / "email.png", full_page=True)

    # Step 2 was sent without a copy; once the checkout is erased, step 1's copy is gone too.
    await _says_no_copy(page, f"/dashboard/checkouts/{checkout_id}/emails/2", "step 2 has no")
    assert await dashboard.store.erase(checkout_id, SENT_AT + timedelta(days=1))
    await _says_no_copy(page, f"/dashboard/checkouts/{checkout_id}/emails/1", "was erased")
    assert await dashboard.store.sent_emails(checkout_id) == {}


async def _says_no_copy(page: Page, path: str, why: str) -> None:
    answer = await page.goto(path)
    assert answer is not None and answer.status == 404
    await expect(page.locator("#no-copy")).to_contain_text("No copy kept")
    await expect(page.locator("#no-copy")).to_contain_text(why)
    await expect(page.locator("article.mail")).to_have_count(0)


async def test_the_checkout_page_lists_its_tasks_and_handles_them(
    context: BrowserContext, dashboard: DashboardStack, screenshots: Path
) -> None:
    ada, bob = await _report(dashboard, "ada"), await _report(dashboard, "bob")
    for checkout_id in (ada, bob):
        await eventually(
            partial(_has_entry, dashboard.store, checkout_id, ActivityType.TASK_CREATED),
            what="the staff task",
        )
    (task,) = await dashboard.store.list_tasks(checkout_id=ada)
    page = await context.new_page()

    # A reader sees the task and its status, and no button.
    await _log_in(page, dashboard.read_key)
    await page.goto(f"/dashboard/checkouts/{ada}")
    rows = page.locator("#checkout-tasks tr:has(td)")
    await expect(rows).to_have_count(1)  # its own task, not bob's
    await expect(rows.first.locator(".task-status")).to_have_text("open")
    await expect(rows.first).to_contain_text(task.title)
    await expect(page.locator("#checkout-tasks").get_by_role("button")).to_have_count(0)
    await page.get_by_role("button", name="Log out").click()

    # A manager marks it done from here and comes back here, then opens it again.
    await _log_in(page, dashboard.manage_key)
    here = f"{dashboard.base_url}/dashboard/checkouts/{ada}"
    await page.goto(f"/dashboard/checkouts/{ada}")
    await page.locator("#checkout-tasks").get_by_role("button", name="Mark done").click()
    await expect(page.get_by_role("heading", name=f"Mark done: task {task.id}")).to_be_visible()
    await expect(page.get_by_role("link", name="Back")).to_have_attribute(
        "href", f"/dashboard/checkouts/{ada}"
    )
    await page.get_by_role("button", name="Confirm: mark done").click()
    await expect(page).to_have_url(f"{here}?outcome=task-done")
    await expect(page.locator("#action-outcome")).to_have_text("Task marked done.")
    await expect(rows.first.locator(".task-status")).to_have_text("done")
    await page.screenshot(path=screenshots / "task-done.png", full_page=True)
    done = await dashboard.store.list_tasks(TaskStatus.DONE)
    assert [t.id for t in done] == [task.id]

    await page.locator("#checkout-tasks").get_by_role("button", name="Reopen").click()
    await page.get_by_role("button", name="Confirm: reopen").click()
    await expect(page).to_have_url(f"{here}?outcome=task-reopened")
    await expect(rows.first.locator(".task-status")).to_have_text("open")
    await expect(page.locator("#timeline li.OPERATOR_ACTION").last).to_contain_text(
        f"task {task.id} reopened by dashboard manager"
    )
    stored = await dashboard.store.get(ada)
    assert stored is not None
    reasons = [a.reason for a in stored.activities if a.type is ActivityType.OPERATOR_ACTION]
    assert reasons == [
        f"task {task.id} done by dashboard manager",
        f"task {task.id} reopened by dashboard manager",
    ]


async def _not_sent(store: SqlStore, name: str, reason: str) -> str:
    checkout_id = f"{name}-{uuid.uuid4().hex}"
    checkout = sample_checkout().model_copy(update={"id": checkout_id, "created_date": SENT_AT})
    await store.save_reported(checkout, SENT_AT)
    entry = ActivityEntry(
        type=ActivityType.EMAIL_NOT_SENT, created_date=SENT_AT, step=2, reason=reason
    )
    await store.record_activity(checkout_id, "step-2", entry)
    return checkout_id


async def test_the_list_filters_by_why_an_email_was_not_sent(
    context: BrowserContext, dashboard: DashboardStack
) -> None:
    failed = await _not_sent(dashboard.store, "failed", "condition_failed:min_total")
    await _not_sent(dashboard.store, "consent", "no_consent")
    page = await context.new_page()
    await _log_in(page, dashboard.read_key)
    await page.goto("/dashboard/checkouts")
    await page.get_by_label("Not sent because").select_option("condition_failed")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(
        f"{dashboard.base_url}/dashboard/checkouts?status=&email=&checkoutId=&cartId=&reason="
        "&notSent=condition_failed&since=&until="
    )
    rows = page.locator("#checkouts tr:has(td)")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(failed)
    await expect(page.get_by_label("Not sent because")).to_have_value("condition_failed")

    answer = await page.goto("/dashboard/checkouts?notSent=bored")
    assert answer is not None and answer.status == 400
    await expect(page.get_by_role("alert")).to_contain_text("not sent because: must be one of")
