"""SendGrid's signed Event Webhook. Shapes: SendGrid's "Event Webhook Reference" (a JSON array of
events with `email`, `timestamp`, `smtp-id`, `event`, `type`, `reason`) and "Getting Started with
the Event Webhook Security Features" (ECDSA P-256/SHA-256 over timestamp + body, base64 DER
signature, the verification key as base64 DER). The test makes the key pair SendGrid would."""

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from api.feedback.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, SendGridFeedback
from api.feedback.source import FeedbackRefusedError
from domain.feedback import FeedbackKind
from tests.feedback.support import SAMPLES, request

NOW = 1_513_299_600


class SendGrid:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    @property
    def verification_key(self) -> str:
        """As SendGrid's mail settings show it."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int = NOW) -> dict[str, str]:
        signed = str(timestamp).encode() + body
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            TIMESTAMP_HEADER: str(timestamp),
        }


@pytest.fixture
def sendgrid() -> SendGrid:
    return SendGrid()


@pytest.fixture
def reader(sendgrid: SendGrid) -> SendGridFeedback:
    return SendGridFeedback(sendgrid.verification_key, now=lambda: NOW)


BODY = (SAMPLES / "sendgrid_events.json").read_bytes()


async def _refused(
    reader: SendGridFeedback, body: bytes, headers: dict[str, str]
) -> FeedbackRefusedError:
    with pytest.raises(FeedbackRefusedError) as refused:
        await reader.read(request(body, headers))
    return refused.value


async def test_signed_events_are_read_by_kind(sendgrid: SendGrid, reader: SendGridFeedback) -> None:
    reading = await reader.read(request(BODY, sendgrid.headers(BODY)))

    got = [(r.kind, r.email, r.message_id) for r in reading.reports]
    assert got == [
        (
            FeedbackKind.HARD_BOUNCE,
            "jane@buyer.example",
            "5f1c0e3a9b7d4e2f8a6c1b0d9e8f7a6b5c4d3e2f.recovery@shop.example",
        ),
        (
            FeedbackKind.SOFT_BOUNCE,
            "mary@buyer.example",
            "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567.recovery@shop.example",
        ),
        (
            FeedbackKind.HARD_BOUNCE,
            "rita@buyer.example",
            "11112222333344445555666677778888aaaabbbb.recovery@shop.example",
        ),
        (
            FeedbackKind.SOFT_BOUNCE,
            "paul@buyer.example",
            "33334444555566667777888899990000ccccdddd.recovery@shop.example",
        ),
        (FeedbackKind.COMPLAINT, "richard@buyer.example", None),
    ]
    assert {r.provider for r in reading.reports} == {"sendgrid"}
    assert reading.reports[0].occurred_at.timestamp() == 1513299570
    assert reading.reports[0].occurred_at.tzinfo is not None


async def test_a_changed_body_is_refused(sendgrid: SendGrid, reader: SendGridFeedback) -> None:
    headers = sendgrid.headers(BODY)
    changed = BODY.replace(b"mary@buyer.example", b"anne@buyer.example")

    refused = await _refused(reader, changed, headers)

    assert (refused.status, refused.code) == (401, "bad_signature")
    assert "buyer.example" not in str(refused)


async def test_another_key_is_refused(reader: SendGridFeedback) -> None:
    refused = await _refused(reader, BODY, SendGrid().headers(BODY))

    assert refused.status == 401


async def test_the_timestamp_is_signed_too(sendgrid: SendGrid, reader: SendGridFeedback) -> None:
    headers = {**sendgrid.headers(BODY), TIMESTAMP_HEADER: str(NOW - 1)}

    refused = await _refused(reader, BODY, headers)

    assert refused.status == 401


@pytest.mark.parametrize("age", [601, -601, 3600])
async def test_an_old_signed_call_is_a_replay(
    sendgrid: SendGrid, reader: SendGridFeedback, age: int
) -> None:
    refused = await _refused(reader, BODY, sendgrid.headers(BODY, NOW - age))

    assert refused.status == 401


async def test_a_call_nine_minutes_old_is_taken(
    sendgrid: SendGrid, reader: SendGridFeedback
) -> None:
    reading = await reader.read(request(BODY, sendgrid.headers(BODY, NOW - 540)))

    assert len(reading.reports) == 5


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {TIMESTAMP_HEADER: str(NOW)},
        {SIGNATURE_HEADER: "not base64!", TIMESTAMP_HEADER: str(NOW)},
        {SIGNATURE_HEADER: "c2lnbmF0dXJl", TIMESTAMP_HEADER: "yesterday"},
    ],
)
async def test_a_missing_or_garbled_signature_is_refused(
    reader: SendGridFeedback, headers: dict[str, str]
) -> None:
    refused = await _refused(reader, BODY, headers)

    assert (refused.status, refused.code) == (401, "bad_signature")


@pytest.mark.parametrize("body", [b"{}", b"not json", b'[{"event": "bounce"}]'])
async def test_a_signed_body_that_is_not_events_is_400(
    sendgrid: SendGrid, reader: SendGridFeedback, body: bytes
) -> None:
    refused = await _refused(reader, body, sendgrid.headers(body))

    assert (refused.status, refused.code) == (400, "invalid_feedback")


async def test_an_event_without_a_recipient_is_400(
    sendgrid: SendGrid, reader: SendGridFeedback
) -> None:
    body = json.dumps([{"event": "spamreport", "timestamp": NOW}]).encode()

    refused = await _refused(reader, body, sendgrid.headers(body))

    assert refused.status == 400


@pytest.mark.parametrize(
    "key",
    [
        "not base64!",
        base64.b64encode(b"not a key").decode(),
        base64.b64encode(
            ec.generate_private_key(ec.SECP384R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).decode(),
    ],
)
def test_a_verification_key_that_cannot_work_stops_the_start(key: str) -> None:
    with pytest.raises(ValueError, match="SendGrid verification key"):
        SendGridFeedback(key)
