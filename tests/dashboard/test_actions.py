"""Acting from the dashboard in headless Chromium against a running stack: a manager recovers a
running checkout and handles its task through the confirmations; a reader sees no buttons and its
posts are refused; a post without the form's CSRF token, or from another origin, is refused."""

import shutil
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import APIResponse, BrowserContext, Page, expect
from temporalio.client import WorkflowExecutionStatus

from api.dashboard.csrf import FIELD, CsrfTokens
from api.dashboard.session import COOKIE
from domain.activity import ActivityType
from domain.checkout import CheckoutStatus
from domain.task import TaskStatus
from store.sql import SqlStore
from store.tasks import TaskStore
from tests.dashboard.stack import DashboardStack
from tests.support import REPO, eventually, sample_checkout_data
from workers.link_secret import dashboard_secret

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

API = "/ecom/v1/abandoned-checkout"
DOC_IMAGES = REPO / "docs" / "images"


async def test_a_manager_handles_the_task_and_recovers_the_running_checkout(
    context: BrowserContext, dashboard: DashboardStack, screenshots: Path
) -> None:
    checkout_id = await _report(dashboard, "ada")
    await eventually(
        partial(_has_entry, dashboard.store, checkout_id, ActivityType.TASK_CREATED),
        what="the email step and the staff task",
    )
    (task,) = await dashboard.store.list_tasks(TaskStatus.OPEN)
    tasks = TaskStore(dashboard.store.engine)
    page = await context.new_page()
    await _log_in(page, dashboard.manage_key)

    # Mark the task done, through its confirmation.
    await page.goto("/dashboard/tasks")
    await page.locator("#tasks").get_by_role("button", name="Mark done").click()
    await expect(page.get_by_role("heading", name=f"Mark done: task {task.id}")).to_be_visible()
    await page.get_by_role("button", name="Confirm: mark done").click()
    await expect(page).to_have_url(f"{dashboard.base_url}/dashboard/tasks?outcome=task-done")
    await expect(page.locator("#action-outcome")).to_have_text("Task marked done.")
    await expect(page.locator("#tasks")).to_have_count(0)
    done = await tasks.get(task.id or 0)
    assert done is not None and done.status is TaskStatus.DONE

    # And open it again.
    await page.locator("#done-tasks").get_by_role("button", name="Reopen").click()
    await page.get_by_role("button", name="Confirm: reopen").click()
    await expect(page.locator("#action-outcome")).to_have_text("Task reopened.")
    await expect(page.locator("#tasks tr:has(td)")).to_have_count(1)
    reopened = await tasks.get(task.id or 0)
    assert reopened is not None and reopened.status is TaskStatus.OPEN
    await page.screenshot(path=screenshots / "1-tasks.png", full_page=True)

    # The checkout's flow still runs (its last email is an hour away): recover it with an order.
    handle = dashboard.service.handle(checkout_id)
    assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
    await page.goto(f"/dashboard/checkouts/{checkout_id}")
    actions = page.locator("#checkout-actions")
    await expect(actions.get_by_role("button")).to_have_text(["Recover", "Cancel"])
    await _screenshot(page, screenshots, "dashboard-checkout.png")
    await actions.get_by_role("button", name="Recover").click()
    await expect(
        page.get_by_role("heading", name=f"Recover checkout {checkout_id}")
    ).to_be_visible()
    await page.get_by_label("Order id (optional)").fill("order-4711")
    await _screenshot(page, screenshots, "dashboard-confirm.png")
    await page.get_by_role("button", name="Confirm recovery").click()

    await expect(page).to_have_url(
        f"{dashboard.base_url}/dashboard/checkouts/{checkout_id}?outcome=recovered"
    )
    await expect(page.locator("#action-outcome")).to_contain_text("Checkout recovered")
    await expect(page.locator("h1 .status")).to_have_text("RECOVERED")
    await expect(page.locator("#checkout-actions")).to_have_count(0)
    operator = page.locator("#timeline li.OPERATOR_ACTION")
    await expect(operator).to_have_count(3)
    await expect(operator.last).to_contain_text("recovered by dashboard manager")
    await page.screenshot(path=screenshots / "2-recovered.png", full_page=True)

    stored = await dashboard.store.get(checkout_id)
    assert stored is not None
    assert stored.status is CheckoutStatus.RECOVERED and stored.order_id == "order-4711"
    # Recorded with the key's name: the two task actions and the recovery.
    reasons = [a.reason for a in stored.activities if a.type is ActivityType.OPERATOR_ACTION]
    assert reasons == [
        f"task {task.id} done by dashboard manager",
        f"task {task.id} reopened by dashboard manager",
        "recovered by dashboard manager",
    ]

    # The flow stops: its workflow completes, and no later step ran.
    async def closed() -> bool:
        return (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED

    await eventually(closed, what="the recovered checkout's workflow to complete")
    after = await dashboard.store.get(checkout_id)
    assert after is not None
    assert not [a for a in after.activities if a.step == 3 and a.type is ActivityType.EMAIL_SENT]


async def test_a_manager_cancels_a_checkout_after_confirming(
    context: BrowserContext, dashboard: DashboardStack
) -> None:
    checkout_id = await _report(dashboard, "cid")
    page = await context.new_page()
    await _log_in(page, dashboard.manage_key)
    await page.goto(f"/dashboard/checkouts/{checkout_id}")
    await page.get_by_role("button", name="Cancel").click()
    # Back leaves everything as it was.
    await page.get_by_role("link", name="Back").click()
    await expect(page).to_have_url(f"{dashboard.base_url}/dashboard/checkouts/{checkout_id}")
    before = await dashboard.store.get(checkout_id)
    assert before is not None and before.stop_reason is None

    await page.get_by_role("button", name="Cancel").click()
    await page.get_by_role("button", name="Confirm cancel").click()
    await expect(page.locator("#action-outcome")).to_contain_text("Checkout cancelled")
    await expect(page.locator("#timeline li.OPERATOR_ACTION")).to_contain_text(
        "cancelled by dashboard manager"
    )
    after = await dashboard.store.get(checkout_id)
    assert after is not None and after.stop_reason is not None
    assert after.status is CheckoutStatus.ABANDONED


async def test_a_reader_sees_no_buttons_and_its_posts_are_refused(
    context: BrowserContext, dashboard: DashboardStack
) -> None:
    checkout_id = await _report(dashboard, "bob")
    await eventually(
        partial(_has_entry, dashboard.store, checkout_id, ActivityType.TASK_CREATED),
        what="the staff task",
    )
    (task,) = await dashboard.store.list_tasks(TaskStatus.OPEN)
    page = await context.new_page()
    await _log_in(page, dashboard.read_key)

    await page.goto(f"/dashboard/checkouts/{checkout_id}")
    await expect(page.get_by_role("heading", name=f"Checkout {checkout_id}")).to_be_visible()
    await expect(page.locator("#checkout-actions")).to_have_count(0)
    await expect(page.get_by_role("button", name="Recover")).to_have_count(0)
    await page.goto("/dashboard/tasks")
    await expect(page.locator("#tasks tr:has(td)")).to_have_count(1)
    await expect(page.get_by_role("button", name="Mark done")).to_have_count(0)

    # The confirmation page is refused too.
    answer = await page.goto(f"/dashboard/checkouts/{checkout_id}/recover")
    assert answer is not None and answer.status == 403
    await expect(page.get_by_role("alert")).to_contain_text("lacks the manage scope")

    # Forged posts from the reader's session: without a token, and with one genuinely derived
    # from its session (so only the scope can refuse it).
    token = await _session_token(context, dashboard)
    origin = {"Origin": dashboard.base_url}
    for form in ({}, {FIELD: token}, {FIELD: token, "order_id": "forged"}):
        refused = await _post(context, f"/dashboard/checkouts/{checkout_id}/recover", form, origin)
        assert refused.status == 403, form
        assert "lacks the manage scope" in await refused.text()
    for path in (f"/dashboard/checkouts/{checkout_id}/cancel", f"/dashboard/tasks/{task.id}/done"):
        assert (await _post(context, path, {FIELD: token}, origin)).status == 403, path

    stored = await dashboard.store.get(checkout_id)
    assert stored is not None
    assert stored.status is CheckoutStatus.ABANDONED and stored.stop_reason is None
    assert not [a for a in stored.activities if a.type is ActivityType.OPERATOR_ACTION]
    (still,) = await dashboard.store.list_tasks(TaskStatus.OPEN)
    assert still.id == task.id


async def test_a_manager_post_without_the_form_token_or_from_elsewhere_is_refused(
    context: BrowserContext, dashboard: DashboardStack
) -> None:
    checkout_id = await _report(dashboard, "eve")
    page = await context.new_page()
    await _log_in(page, dashboard.manage_key)
    await page.goto(f"/dashboard/checkouts/{checkout_id}/recover")
    token = await page.locator(f"input[name={FIELD}]").get_attribute("value")
    assert token and token == await _session_token(context, dashboard)
    path = f"/dashboard/checkouts/{checkout_id}/recover"
    here = {"Origin": dashboard.base_url}

    forged: list[tuple[dict[str, str], dict[str, str]]] = [
        ({}, here),  # no token
        ({FIELD: ""}, here),
        ({FIELD: token[:-2] + ("AA" if not token.endswith("AA") else "BB")}, here),  # wrong
        ({FIELD: await _session_token(context, dashboard, "another-session")}, here),
        ({FIELD: token}, {"Origin": "https://evil.example"}),  # the right token, elsewhere
        ({FIELD: token}, {"Origin": "null"}),
        ({FIELD: token}, {"Referer": "https://evil.example/page"}),
        ({FIELD: token}, {}),  # neither Origin nor Referer
    ]
    for form, headers in forged:
        refused = await _post(context, path, form, headers)
        assert refused.status == 403, (form, headers)
    stored = await dashboard.store.get(checkout_id)
    assert stored is not None and stored.status is CheckoutStatus.ABANDONED

    # The same post with the token and this origin goes through (the checks pass genuine posts).
    accepted = await _post(context, path, {FIELD: token}, {"Referer": dashboard.base_url + path})
    assert accepted.status == 303
    assert accepted.headers["location"].endswith("?outcome=recovered")
    stored = await dashboard.store.get(checkout_id)
    assert stored is not None and stored.status is CheckoutStatus.RECOVERED


async def _log_in(page: Page, key: str) -> None:
    await page.goto("/dashboard/login")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()


async def _session_token(
    context: BrowserContext, dashboard: DashboardStack, session: str | None = None
) -> str:
    """The CSRF token of the context's session (or of the cookie value `session`)."""
    if session is None:
        (cookie,) = [c for c in await context.cookies() if c["name"] == COOKIE]
        # As the server reads it: the cookie's value, without the quotes its `=` padding got.
        session = cookie["value"].strip('"')
    return CsrfTokens(dashboard_secret(dashboard.settings)).for_session(session)


async def _post(
    context: BrowserContext, path: str, form: dict[str, str], headers: dict[str, str]
) -> APIResponse:
    # The browser context's own cookies: a post as a page elsewhere could make the browser send.
    fields: dict[str, str | float | bool] = dict(form)
    return await context.request.post(path, form=fields, headers=headers, max_redirects=0)


async def _screenshot(page: Page, screenshots: Path, name: str) -> None:
    """Into the test's folder, and into docs/images for the dashboard guide."""
    await page.screenshot(path=screenshots / name, full_page=True)
    DOC_IMAGES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshots / name, DOC_IMAGES / name)


async def _report(dashboard: DashboardStack, name: str, **overrides: Any) -> str:
    body: dict[str, Any] = sample_checkout_data(
        buyerInfo={"email": f"{name}@example.com", "visitorId": f"visitor-{name}"},
        contactDetails={"firstName": name.title()},
    )
    body.update(overrides)
    answer = await dashboard.http.post(API, json=body, headers=dashboard.as_manager())
    assert answer.status_code == 201, answer.text
    return str(answer.json()["abandonedCheckout"]["id"])


async def _has_entry(store: SqlStore, checkout_id: str, kind: ActivityType) -> bool:
    checkout = await store.get(checkout_id)
    return checkout is not None and any(a.type is kind for a in checkout.activities)
