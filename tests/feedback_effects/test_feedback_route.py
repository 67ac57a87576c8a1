"""`POST /feedback/v1/{provider}` (api.feedback_routes): a provider that is not configured is not
found, a call its reader refuses is answered in the API's error shape, a good one is recorded and
counted. The app is the one the API process serves (workers.api_server.build_app), with the
generic reader configured (CHECKOUT_RECOVERY_FEEDBACK_SIGNING_SECRET) and signed as a relay's
glue code signs it; SQLite and PostgreSQL."""

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client

from api.app import ApiParts, create_app
from api.feedback.source import FeedbackReading, FeedbackRefusedError, FeedbackRequest
from domain.policy import RecoveryPolicy
from domain.webhook_signing import new_secret, webhook_headers
from service.checkouts import CheckoutService
from store.sql import SqlStore
from tests.support import default_policy_any_hour, engine_settings
from workers.api_server import build_app
from workers.link_secret import link_signer_for

SECRET = new_secret()
ROUTE = "/feedback/v1/generic"
OCCURRED = "2026-12-04T12:00:00Z"


def _service(store: SqlStore) -> CheckoutService:
    # The route reaches Temporal only through the store's outbox (the workers' hand-off): no
    # Temporal client is asked for here.
    return CheckoutService(cast(Client, None), store, "feedback-route-test")


@pytest.fixture
async def http(store: SqlStore, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = engine_settings(0, data_dir=tmp_path, feedback_signing_secret=SECRET)
    app = build_app(settings, _service(store), store, default_policy_any_hour())
    async with _client(app) as client:
        yield client


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


def _signed(events: list[dict[str, Any]], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"events": events}).encode()
    return body, webhook_headers(secret, "evt-1", int(time.time()), body)


def _bounce(email: str = "ada@example.com", kind: str = "hard_bounce") -> dict[str, Any]:
    return {"type": kind, "email": email, "messageId": "<x@shop.test>", "occurredAt": OCCURRED}


async def test_a_signed_call_is_recorded_and_counted(http: httpx.AsyncClient):
    body, headers = _signed([_bounce(), _bounce("bob@example.com", "soft_bounce")])

    answer = await http.post(ROUTE, content=body, headers=headers)
    again = await http.post(ROUTE, content=body, headers=headers)  # the relay retries

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": 2, "suppressed": 1}
    assert again.json() == {"received": 2, "suppressed": 0}


async def test_a_badly_signed_call_is_refused_in_the_api_error_shape(http: httpx.AsyncClient):
    body, headers = _signed([_bounce()], secret=new_secret())

    answer = await http.post(ROUTE, content=body, headers=headers)
    unsigned = await http.post(ROUTE, content=body, headers={"content-type": "application/json"})

    assert answer.status_code == 401
    assert answer.json()["code"] == "bad_signature" and "message" in answer.json()
    assert unsigned.status_code == 401
    assert "ada@example.com" not in answer.text


async def test_an_unconfigured_provider_is_not_found(
    http: httpx.AsyncClient, store: SqlStore, tmp_path: Path
):
    body, headers = _signed([_bounce()])

    other = await http.post("/feedback/v1/sendgrid", content=body, headers=headers)

    assert other.status_code == 404 and other.json()["code"] == "feedback_not_configured"
    # A deployment that configured no relay at all.
    bare = build_app(engine_settings(0, data_dir=tmp_path), _service(store), store, _policy())
    async with _client(bare) as client:
        answer = await client.post(ROUTE, content=body, headers=headers)
    assert answer.status_code == 404 and answer.json()["code"] == "feedback_not_configured"


@dataclass
class _Refusing:
    """A reader whose provider says the call is not its own, and one that reads no reports."""

    name: str
    status: int

    async def read(self, request: FeedbackRequest) -> FeedbackReading:
        if self.status:
            raise FeedbackRefusedError(self.status, "not_ours", "the call is not the provider's")
        return FeedbackReading(note="subscription confirmed")


async def test_a_readers_refusal_and_note_are_answered_as_they_are(store: SqlStore, tmp_path: Path):
    settings = engine_settings(0, data_dir=tmp_path)
    sources = {"refusing": _Refusing("refusing", 403), "confirming": _Refusing("confirming", 0)}
    app = create_app(
        ApiParts(
            service=_service(store),
            store=store,
            policy=_policy(),
            links=link_signer_for(settings),
            codec=None,
            codec_cors_origins="",
            max_body_bytes=1000,
            feedback_sources=sources,
        )
    )
    async with _client(app) as client:
        refused = await client.post("/feedback/v1/refusing", content=b"{}")
        noted = await client.post("/feedback/v1/confirming", content=b"{}")
        too_big = await client.post("/feedback/v1/confirming", content=b"x" * 2000)

    assert refused.status_code == 403
    assert refused.json() == {"code": "not_ours", "message": "the call is not the provider's"}
    assert noted.status_code == 200
    assert noted.json() == {"received": 0, "suppressed": 0, "note": "subscription confirmed"}
    assert too_big.status_code == 413


def _policy() -> RecoveryPolicy:
    return default_policy_any_hour()
