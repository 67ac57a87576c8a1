"""The codec endpoint over real HTTP, as the Temporal Web UI and CLI call it."""

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Header, HTTPException
from temporalio.api.common.v1 import Payload

from api.codec_routes import add_codec_cors, codec_router, parse_origins
from api.errors import install_error_handlers
from codec.payload_codec import AesGcmCodec, parse_codec_keys
from tests.ports import free_port
from workers.api_server import serving

UI_ORIGIN = "http://localhost:8233"
KEY = base64.b64encode(b"K" * 32).decode()
API_KEY = "test-api-key"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _plain_payloads() -> dict[str, Any]:
    return {
        "payloads": [
            {
                "metadata": {"encoding": _b64(b"json/plain")},
                "data": _b64(b'{"email":"ada@example.com","firstName":"Ada"}'),
            },
            {"metadata": {"encoding": _b64(b"binary/null")}},
        ]
    }


async def _require_api_key(authorization: Annotated[str | None, Header()] = None) -> None:
    if authorization != f"Bearer {API_KEY}":
        raise HTTPException(401, "a valid API key is needed", {"WWW-Authenticate": "Bearer"})


def _app(codec: AesGcmCodec | None, *, protected: bool = False) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(codec_router(codec, _require_api_key if protected else None))
    add_codec_cors(app, parse_origins(f"{UI_ORIGIN}/, http://127.0.0.1:8233"))

    @app.post("/elsewhere")
    async def elsewhere() -> dict[str, str]:
        return {"ok": "yes"}

    return app


@contextlib.asynccontextmanager
async def _serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    async with (
        serving(app, "127.0.0.1", port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):
        yield http


def _codec() -> AesGcmCodec:
    return AesGcmCodec(parse_codec_keys(f"k1:{KEY}"))


async def test_encode_then_decode_round_trips_in_proto_json() -> None:
    codec = _codec()
    async with _serving(_app(codec)) as http:
        headers = {"X-Namespace": "default", "Content-Type": "application/json"}
        encoded = await http.post("/codec/encode", json=_plain_payloads(), headers=headers)
        decoded = await http.post("/codec/decode", content=encoded.content, headers=headers)

    assert encoded.status_code == 200, encoded.text
    encrypted = encoded.json()["payloads"]
    assert len(encrypted) == 2
    for payload in encrypted:
        assert base64.b64decode(payload["metadata"]["encoding"]) == b"binary/encrypted"
        assert base64.b64decode(payload["metadata"]["encryption-key-id"]) == b"k1"
        assert b"ada@example.com" not in base64.b64decode(payload["data"])
    assert decoded.status_code == 200, decoded.text
    assert decoded.json() == _plain_payloads()


async def test_decode_reads_what_a_worker_encrypted_and_passes_plain_payloads() -> None:
    codec = _codec()
    [from_worker] = await codec.encode(
        [Payload(metadata={"encoding": b"json/plain"}, data=b'"Lovelace"')]
    )
    plain = {"metadata": {"encoding": _b64(b"json/plain")}, "data": _b64(b'"as written"')}
    body = {
        "payloads": [
            {
                "metadata": {k: _b64(v) for k, v in from_worker.metadata.items()},
                "data": _b64(from_worker.data),
            },
            plain,
        ]
    }
    async with _serving(_app(codec)) as http:
        response = await http.post("/codec/decode", json=body)

    assert response.status_code == 200, response.text
    first, second = response.json()["payloads"]
    assert base64.b64decode(first["data"]) == b'"Lovelace"'
    assert second == plain


async def test_a_payload_under_an_unknown_key_is_a_400_naming_the_key_id() -> None:
    [foreign] = await AesGcmCodec(parse_codec_keys(f"retired:{KEY}")).encode([Payload(data=b"x")])
    body = {
        "payloads": [
            {
                "metadata": {k: _b64(v) for k, v in foreign.metadata.items()},
                "data": _b64(foreign.data),
            }
        ]
    }
    async with _serving(_app(_codec())) as http:
        response = await http.post("/codec/decode", json=body)

    assert response.status_code == 400
    assert response.json()["code"] == "undecryptable_payload"
    assert "'retired'" in response.json()["message"]
    assert KEY not in response.text


async def test_authorization_is_required_when_configured() -> None:
    async with _serving(_app(_codec(), protected=True)) as http:
        refused = await http.post(
            "/codec/decode", json=_plain_payloads(), headers={"Origin": UI_ORIGIN}
        )
        wrong = await http.post(
            "/codec/encode", json=_plain_payloads(), headers={"Authorization": "Bearer nope"}
        )
        allowed = await http.post(
            "/codec/encode",
            json=_plain_payloads(),
            headers={"Authorization": f"Bearer {API_KEY}", "X-Namespace": "default"},
        )

    assert refused.status_code == 401
    assert refused.json()["message"] == "a valid API key is needed"
    # The browser shows the UI this 401 only because it carries the CORS headers too.
    assert refused.headers["access-control-allow-origin"] == UI_ORIGIN
    assert refused.headers["access-control-allow-credentials"] == "true"
    assert wrong.status_code == 401
    assert allowed.status_code == 200
    assert len(allowed.json()["payloads"]) == 2


async def test_cors_preflight_answers_the_web_ui_and_nobody_else() -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
    }
    async with _serving(_app(_codec(), protected=True)) as http:
        from_ui = await http.options("/codec/decode", headers={**preflight, "Origin": UI_ORIGIN})
        from_loopback = await http.options(
            "/codec/encode", headers={**preflight, "Origin": "http://127.0.0.1:8233"}
        )
        from_elsewhere = await http.options(
            "/codec/decode", headers={**preflight, "Origin": "https://evil.example"}
        )
        other_route = await http.options("/elsewhere", headers={**preflight, "Origin": UI_ORIGIN})
        actual = await http.post(
            "/codec/decode",
            json=_plain_payloads(),
            headers={"Origin": UI_ORIGIN, "Authorization": f"Bearer {API_KEY}"},
        )

    assert from_ui.status_code == 200, from_ui.text
    assert from_ui.headers["access-control-allow-origin"] == UI_ORIGIN
    assert from_ui.headers["access-control-allow-credentials"] == "true"
    assert "POST" in from_ui.headers["access-control-allow-methods"]
    allowed_headers = from_ui.headers["access-control-allow-headers"].lower()
    for header in ("content-type", "x-namespace", "authorization"):
        assert header in allowed_headers
    assert from_loopback.headers["access-control-allow-origin"] == "http://127.0.0.1:8233"

    # Without Access-Control-Allow-Origin the browser refuses to send the request at all.
    assert from_elsewhere.status_code == 400
    assert "access-control-allow-origin" not in from_elsewhere.headers
    # CORS is scoped to the codec: the rest of the API is not opened to the UI's origin.
    assert "access-control-allow-origin" not in other_route.headers

    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == UI_ORIGIN
    assert actual.headers["access-control-allow-credentials"] == "true"


async def test_malformed_bodies_are_400_json_never_500() -> None:
    bodies: list[bytes] = [
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b"{}",
        json.dumps({"payloads": "abc"}).encode(),
        json.dumps({"payloads": [{"data": "@@not-base64@@"}]}).encode(),
        json.dumps({"payloads": [{"metadata": {"encoding": 5}}]}).encode(),
        json.dumps({"payloads": [{"unknownField": True}]}).encode(),
        json.dumps({"payloads": [17]}).encode(),
    ]
    async with _serving(_app(_codec())) as http:
        responses = [
            await http.post(
                f"/codec/{direction}",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            for body in bodies
            for direction in ("encode", "decode")
        ]

    for response in responses:
        assert response.status_code == 400, (response.request.content, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["code"] == "invalid_payloads"
        assert response.json()["message"]


async def test_without_keys_the_codec_routes_say_so() -> None:
    async with _serving(_app(None)) as http:
        response = await http.post("/codec/decode", json=_plain_payloads())

    assert response.status_code == 404
    assert response.json()["code"] == "codec_disabled"
    assert "CHECKOUT_RECOVERY_CODEC_KEYS" in response.json()["message"]


def test_origins_parse_and_a_wildcard_is_refused() -> None:
    assert parse_origins(" http://localhost:8233/ ,https://ui.example.com,") == [
        "http://localhost:8233",
        "https://ui.example.com",
    ]
    for bad in ("*", "localhost:8233"):
        try:
            parse_origins(bad)
        except ValueError as err:
            assert "origin" in str(err)
        else:
            raise AssertionError(f"{bad!r} was accepted")
