"""The generic signed form, as the README documents it: `{"events": [{type, email, messageId,
occurredAt}]}`, signed as Standard Webhooks sign (the signing here is written from that
specification, apart from the engine's own domain.webhook_signing)."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from api.feedback.generic import GenericFeedback
from api.feedback.source import FeedbackRefusedError
from domain.feedback import FeedbackKind, FeedbackReport
from domain.webhook_signing import new_secret, webhook_headers
from tests.feedback.support import SAMPLES, request

NOW = 1_772_356_000
BODY = (SAMPLES / "generic_events.json").read_bytes()


def _signed(secret: str, body: bytes, timestamp: int = NOW, msg_id: str = "msg_1") -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def _headers(secret: str, body: bytes, timestamp: int = NOW) -> dict[str, str]:
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": _signed(secret, body, timestamp),
    }


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def reader(secret: str) -> GenericFeedback:
    return GenericFeedback(secret, now=lambda: NOW)


async def _refused(
    reader: GenericFeedback, body: bytes, headers: dict[str, str]
) -> FeedbackRefusedError:
    with pytest.raises(FeedbackRefusedError) as refused:
        await reader.read(request(body, headers))
    return refused.value


async def test_signed_events_are_read(secret: str, reader: GenericFeedback) -> None:
    reading = await reader.read(request(BODY, _headers(secret, BODY)))

    assert reading.reports == [
        FeedbackReport(
            provider="generic",
            kind=FeedbackKind.HARD_BOUNCE,
            email="jane@buyer.example",
            message_id="5f1c0e3a9b7d4e2f8a6c1b0d9e8f7a6b5c4d3e2f.recovery@shop.example",
            occurred_at=datetime(2026, 3, 1, 9, 15, tzinfo=UTC),
        ),
        FeedbackReport(
            provider="generic",
            kind=FeedbackKind.SOFT_BOUNCE,
            email="mary@buyer.example",
            message_id=None,
            occurred_at=datetime(2026, 3, 1, 9, 16, tzinfo=timezone(timedelta(hours=1))),
        ),
        FeedbackReport(
            provider="generic",
            kind=FeedbackKind.COMPLAINT,
            email="richard@buyer.example",
            message_id="0a1b2c3d4e5f60718293a4b5c6d7e8f901234567.recovery@shop.example",
            occurred_at=datetime(2026, 3, 1, 10, 0, 0, 500000, tzinfo=UTC),
        ),
    ]


async def test_what_our_own_webhooks_sign_is_taken(secret: str, reader: GenericFeedback) -> None:
    headers = webhook_headers(secret, "evt_1", NOW, BODY)

    reading = await reader.read(request(BODY, headers))

    assert len(reading.reports) == 3


async def test_one_of_several_signatures_is_enough(secret: str, reader: GenericFeedback) -> None:
    headers = _headers(secret, BODY)
    headers["webhook-signature"] = _signed(new_secret(), BODY) + " " + headers["webhook-signature"]

    reading = await reader.read(request(BODY, headers))

    assert len(reading.reports) == 3


async def test_a_changed_body_is_refused(secret: str, reader: GenericFeedback) -> None:
    headers = _headers(secret, BODY)

    refused = await _refused(reader, BODY.replace(b"hard_bounce", b"complaint"), headers)

    assert (refused.status, refused.code) == (401, "bad_signature")


async def test_another_secret_is_refused(reader: GenericFeedback) -> None:
    refused = await _refused(reader, BODY, _headers(new_secret(), BODY))

    assert refused.status == 401


@pytest.mark.parametrize("age", [301, -301])
async def test_a_call_outside_the_tolerance_is_a_replay(
    secret: str, reader: GenericFeedback, age: int
) -> None:
    refused = await _refused(reader, BODY, _headers(secret, BODY, NOW - age))

    assert refused.status == 401


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_a_missing_header_is_refused(
    secret: str, reader: GenericFeedback, missing: str
) -> None:
    headers = _headers(secret, BODY)
    del headers[missing]

    refused = await _refused(reader, BODY, headers)

    assert refused.status == 401


async def test_a_signature_with_other_characters_is_refused(reader: GenericFeedback) -> None:
    headers = {"webhook-id": "m", "webhook-timestamp": str(NOW), "webhook-signature": "v1,é"}

    refused = await _refused(reader, BODY, headers)

    assert refused.status == 401


@pytest.mark.parametrize(
    "event",
    [
        {"type": "bounce", "email": "a@b.example", "occurredAt": "2026-03-01T09:15:00Z"},
        {"type": "complaint", "email": "a@b.example", "occurredAt": "2026-03-01T09:15:00"},
        {"type": "complaint", "email": "a@b.example"},
        {"type": "complaint", "email": "a@b.example", "occurredAt": "2026-03-01T09:15:00Z", "x": 1},
    ],
)
async def test_a_signed_body_off_the_form_is_400_without_quoting_it(
    secret: str, reader: GenericFeedback, event: dict[str, object]
) -> None:
    body = json.dumps({"events": [event]}).encode()

    refused = await _refused(reader, body, _headers(secret, body))

    assert (refused.status, refused.code) == (400, "invalid_feedback")
    assert "b.example" not in str(refused)


def test_a_secret_that_is_not_whsec_stops_the_start() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        GenericFeedback("not-a-secret")
