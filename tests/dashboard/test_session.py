"""The dashboard session over plain HTTP: what a browser test cannot see (headers, logs, revocation,
production mode without a mailbox)."""

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.dashboard.session import COOKIE
from store.api_keys import ApiKeyStore
from store.sql import SqlStore
from tests.dashboard.stack import DashboardStack, dashboard_stack

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def production(
    dev_server_env: WorkflowEnvironment, store: SqlStore, tmp_path: Path
) -> AsyncIterator[DashboardStack]:
    async with dashboard_stack(dev_server_env.client, store, tmp_path, dev=False) as running:
        yield running


async def test_session_cookie_pages_and_revocation(
    production: DashboardStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(base_url=production.base_url) as http:
        refused = await http.post("/dashboard/login", data={"api_key": "crk_nope"})
        assert refused.status_code == 401 and COOKIE not in refused.cookies

        login = await http.post(
            "/dashboard/login", data={"api_key": production.read_key, "next": "https://evil.test/"}
        )
        # A `next` outside the dashboard is ignored: no open redirect.
        assert login.status_code == 303 and login.headers["location"] == "/dashboard"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/dashboard" in cookie

        page = await http.get("/dashboard")
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        assert "/dashboard/mailbox" not in page.text  # production: no mailbox in the menu
        assert (await http.get("/dashboard/mailbox")).status_code == 404
        assert (await http.get("/dashboard/tasks")).status_code == 200
        bad = await http.get("/dashboard/checkouts", params={"status": "LOST", "since": "May"})
        assert bad.status_code == 400
        assert "status must be one of ABANDONED, RECOVERED" in bad.text
        assert "since: &#39;May&#39; is not a date" in bad.text
        bad_cursor = await http.get("/dashboard/checkouts", params={"cursor": "garbage"})
        assert bad_cursor.status_code == 400

        # An altered cookie is no session.
        genuine = login.cookies[COOKIE].strip('"')
        altered = genuine[:40] + ("A" if genuine[40] != "A" else "B") + genuine[41:]
        http.cookies.clear()
        http.cookies.set(COOKIE, altered, path="/dashboard")
        forged = await http.get("/dashboard/tasks")
        assert forged.status_code == 303
        assert forged.headers["location"] == "/dashboard/login?next=/dashboard/tasks"

        # A revoked key ends the session once the key cache (5 s) lets go of it.
        http.cookies.clear()
        await http.post("/dashboard/login", data={"api_key": production.read_key})
        assert (await http.get("/dashboard/tasks")).status_code == 200
        key_id = production.read_key.split("_")[1]
        assert await ApiKeyStore(production.store.engine).revoke(key_id)
        await asyncio.sleep(5.2)
        assert (await http.get("/dashboard/tasks")).status_code == 303

    assert production.read_key not in caplog.text


async def test_the_dashboard_is_not_in_the_api_document(production: DashboardStack) -> None:
    async with httpx.AsyncClient(base_url=production.base_url) as http:
        document = (await http.get("/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/dashboard")]
