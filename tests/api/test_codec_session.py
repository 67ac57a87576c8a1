"""The codec's dashboard-session access and its CORS, over real HTTP, without a browser.

`tests/dashboard/test_webui_codec.py` drives the same through the Temporal Web UI in Chromium;
this covers the cases a browser would never send (no Origin, a forged one, a revoked session).
"""

import base64
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.auth import Authenticator
from api.codec_routes import (
    CODEC_PATH,
    SESSION_CODEC_PATH,
    CodecAccess,
    add_codec_cors,
    codec_router,
)
from api.dashboard.session import COOKIE, SessionCookies
from api.errors import install_error_handlers
from codec.payload_codec import AesGcmCodec, parse_codec_keys
from domain.access import Scope
from store.api_keys import ApiKeyStore
from store.sql import SqlStore
from tests.ports import free_port
from workers.api_server import serving

UI = "http://localhost:8233"
SECRET = "s" * 32
PAYLOADS: dict[str, Any] = {
    "payloads": [
        {
            "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
            "data": base64.b64encode(b'{"email":"ada@example.com"}').decode(),
        }
    ]
}


@contextlib.asynccontextmanager
async def _serving(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, ApiKeyStore]]:
    store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await store.create_schema()
    keys = ApiKeyStore(store.engine)
    auth = Authenticator(keys, cache_seconds=0)
    sessions = SessionCookies(SECRET, timedelta(hours=1))
    access = CodecAccess(auth, sessions, [UI])
    codec = AesGcmCodec(parse_codec_keys(f"k:{base64.b64encode(b'k' * 32).decode()}"))
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(codec_router(codec, access))
    app.include_router(codec_router(codec, access, SESSION_CODEC_PATH, include_in_schema=False))
    add_codec_cors(app, [UI], [CODEC_PATH, SESSION_CODEC_PATH])
    port = free_port()
    try:
        async with (
            serving(app, "127.0.0.1", port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
        ):
            yield http, keys
    finally:
        await store.close()


def _session(token: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={SessionCookies(SECRET, timedelta(hours=1)).seal(token)}"}


@pytest.mark.parametrize("path", [CODEC_PATH, SESSION_CODEC_PATH])
async def test_a_session_decodes_only_from_a_web_ui_origin(tmp_path: Path, path: str) -> None:
    async with _serving(tmp_path) as (http, keys):
        key, token = await keys.create("operator", frozenset({Scope.READ}))
        decode = f"{path}/decode"
        from_ui = await http.post(decode, json=PAYLOADS, headers={**_session(token), "Origin": UI})
        elsewhere = await http.post(
            decode, json=PAYLOADS, headers={**_session(token), "Origin": "http://localhost:9000"}
        )
        no_origin = await http.post(decode, json=PAYLOADS, headers=_session(token))
        forged = await http.post(
            decode, json=PAYLOADS, headers={"Cookie": f"{COOKIE}=forged", "Origin": UI}
        )
        anonymous = await http.post(decode, json=PAYLOADS, headers={"Origin": UI})
        # A key in the header is judged alone, from anywhere (the CLI sends no Origin).
        with_key = await http.post(
            decode, json=PAYLOADS, headers={"Authorization": f"Bearer {token}"}
        )
        await keys.revoke(key.id)
        revoked = await http.post(decode, json=PAYLOADS, headers={**_session(token), "Origin": UI})

    assert from_ui.status_code == 200, from_ui.text
    assert from_ui.json()["payloads"][0]["data"] == PAYLOADS["payloads"][0]["data"]
    assert from_ui.headers["access-control-allow-origin"] == UI
    assert from_ui.headers["access-control-allow-credentials"] == "true"
    for refused in (elsewhere, no_origin):
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "origin_not_allowed"
        assert "localhost:9000" not in refused.text
    assert "access-control-allow-origin" not in elsewhere.headers
    assert "access-control-allow-credentials" not in elsewhere.headers
    for refused in (forged, anonymous, revoked):
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "unauthorized"
        # The UI may read the refusal (and say so) rather than see a CORS failure.
        assert refused.headers["access-control-allow-origin"] == UI
    assert with_key.status_code == 200


async def test_preflight_on_the_session_path_answers_the_ui_origins_only(tmp_path: Path) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    decode = f"{SESSION_CODEC_PATH}/decode"
    async with _serving(tmp_path) as (http, _):
        from_ui = await http.options(decode, headers={**preflight, "Origin": UI})
        elsewhere = await http.options(decode, headers={**preflight, "Origin": "https://x.example"})
        put = await http.options(
            decode, headers={**preflight, "Origin": UI, "Access-Control-Request-Method": "PUT"}
        )
        cookie_header = await http.options(
            decode,
            headers={**preflight, "Origin": UI, "Access-Control-Request-Headers": "x-evil"},
        )

    assert from_ui.status_code == 200
    assert from_ui.headers["access-control-allow-origin"] == UI
    assert from_ui.headers["access-control-allow-credentials"] == "true"
    assert from_ui.headers["access-control-allow-methods"] == "POST"
    assert "Origin" in from_ui.headers["vary"]
    for refused in (elsewhere, put, cookie_header):
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        assert "access-control-allow-credentials" not in refused.headers
