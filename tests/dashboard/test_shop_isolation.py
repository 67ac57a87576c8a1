"""The dashboard shows a signed-in key its own shop only, as the API does: another shop's checkout,
its emails, its tasks and its figures are not there (404 for an id, absent from lists), and its
actions and previews cannot reach it. Over HTTP against a running service (dashboard stack)."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from domain.access import Scope
from domain.activity import ActivityType
from store.api_keys import ApiKeyStore
from store.sql import SqlStore
from tests.dashboard.stack import DashboardStack, dashboard_stack
from tests.support import eventually, sample_checkout_data

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

EMAIL = "grace.shop-a@example.com"


@pytest.fixture
async def running(
    dev_server_env: WorkflowEnvironment, store: SqlStore, tmp_path: Path
) -> AsyncIterator[DashboardStack]:
    async with dashboard_stack(dev_server_env.client, store, tmp_path) as stack:
        yield stack


async def _signed_in(base_url: str, token: str) -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=base_url, timeout=30)
    login = await http.post("/dashboard/login", data={"api_key": token})
    assert login.status_code == 303, login.text
    return http


async def test_a_shop_key_sees_only_its_own_shop_in_the_dashboard(
    running: DashboardStack, store: SqlStore
) -> None:
    # A checkout of the default shop (the stack's keys), whose flow sends and makes a task.
    reported = await running.http.post(
        "/ecom/v1/abandoned-checkout",
        json=sample_checkout_data(buyerInfo={"email": EMAIL, "visitorId": "visitor-grace"}),
        headers=running.as_manager(),
    )
    assert reported.status_code == 201, reported.text
    theirs = reported.json()["abandonedCheckout"]["id"]

    async def task_made() -> bool:
        found = await store.get(theirs)
        kinds = {a.type for a in found.activities} if found else set()
        return {ActivityType.EMAIL_SENT, ActivityType.TASK_CREATED} <= kinds

    await eventually(task_made, what="the default shop's email and task")
    [task] = await store.list_tasks(checkout_id=theirs)

    keys = ApiKeyStore(store.engine)
    _, other = await keys.create("shop-b manager", frozenset({Scope.MANAGE}), shop_id="shop-b")
    own = await _signed_in(running.base_url, running.manage_key)
    foreign = await _signed_in(running.base_url, other)
    try:
        # The default shop's own key sees it everywhere.
        assert (await own.get(f"/dashboard/checkouts/{theirs}")).status_code == 200
        assert EMAIL in (await own.get("/dashboard/checkouts")).text
        assert (await own.get(f"/dashboard/checkouts/{theirs}/emails/1")).status_code == 200

        # Shop B's key: not there at all.
        for path in (
            f"/dashboard/checkouts/{theirs}",
            f"/dashboard/checkouts/{theirs}/emails/1",
            f"/dashboard/checkouts/{theirs}/recover",
            f"/dashboard/tasks/{task.id}/done",
        ):
            answer = await foreign.get(path)
            assert answer.status_code == 404, (path, answer.status_code)
            assert EMAIL not in answer.text, path
        listing = await foreign.get("/dashboard/checkouts", params={"email": "grace"})
        assert listing.status_code == 200 and EMAIL not in listing.text
        assert theirs not in (await foreign.get("/dashboard/tasks")).text
        preview = await foreign.get("/dashboard/preview", params={"step": 1, "checkout": theirs})
        assert preview.status_code == 400 and EMAIL not in preview.text
    finally:
        await own.aclose()
        await foreign.aclose()
