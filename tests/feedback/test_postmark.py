"""Postmark's bounce and spam-complaint webhooks. Shapes: Postmark's "Bounce webhook", "Spam
complaint webhook" and "Delivery webhook" pages (one JSON object a call: RecordType, Type, Email,
BouncedAt, MessageID, Metadata) and its "Bounce types" list; the credentials are the basic auth
of the webhook URL, which Postmark sends as an Authorization header."""

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.feedback.postmark import PostmarkFeedback
from api.feedback.source import FeedbackRefusedError
from domain.feedback import FeedbackKind
from tests.feedback.support import request, sample

USER, PASSWORD = "postmark", "correct horse battery staple"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


AUTH = _basic(USER, PASSWORD)


@pytest.fixture
def reader() -> PostmarkFeedback:
    return PostmarkFeedback(USER, PASSWORD)


def _body(name: str, **changes: Any) -> bytes:
    return json.dumps({**sample(name), **changes}).encode()


async def _refused(
    reader: PostmarkFeedback, body: bytes, headers: dict[str, str]
) -> FeedbackRefusedError:
    with pytest.raises(FeedbackRefusedError) as refused:
        await reader.read(request(body, headers))
    return refused.value


async def test_a_hard_bounce_with_our_message_id_in_metadata(reader: PostmarkFeedback) -> None:
    reading = await reader.read(request(_body("postmark_bounce.json"), AUTH))

    [report] = reading.reports
    assert report.provider == "postmark"
    assert report.kind is FeedbackKind.HARD_BOUNCE
    assert report.email == "jane@buyer.example"
    # Our Message-ID from Metadata, not Postmark's MessageID.
    assert report.message_id == "5f1c0e3a9b7d4e2f8a6c1b0d9e8f7a6b5c4d3e2f.recovery@shop.example"
    assert report.occurred_at.utcoffset() == timedelta(0)
    assert report.occurred_at.replace(microsecond=0) == datetime(
        2019, 11, 5, 16, 33, 54, tzinfo=UTC
    )


async def test_a_spam_complaint_without_our_message_id(reader: PostmarkFeedback) -> None:
    reading = await reader.read(request(_body("postmark_spam_complaint.json"), AUTH))

    [report] = reading.reports
    assert report.kind is FeedbackKind.COMPLAINT
    assert report.email == "richard@buyer.example"
    assert report.message_id is None
    assert report.occurred_at.utcoffset() == timedelta(hours=-5)


async def test_headers_in_the_payload_give_our_message_id(reader: PostmarkFeedback) -> None:
    headers = [{"Name": "Message-ID", "Value": "<abc.recovery@shop.example>"}]
    body = _body("postmark_spam_complaint.json", Headers=headers)

    [report] = (await reader.read(request(body, AUTH))).reports

    assert report.message_id == "abc.recovery@shop.example"


@pytest.mark.parametrize(
    ("bounce_type", "kind"),
    [
        ("HardBounce", FeedbackKind.HARD_BOUNCE),
        ("BadEmailAddress", FeedbackKind.HARD_BOUNCE),
        ("ManuallyDeactivated", FeedbackKind.HARD_BOUNCE),
        ("SoftBounce", FeedbackKind.SOFT_BOUNCE),
        ("Transient", FeedbackKind.SOFT_BOUNCE),
        ("DnsError", FeedbackKind.SOFT_BOUNCE),
        ("Blocked", FeedbackKind.SOFT_BOUNCE),
        ("SpamComplaint", FeedbackKind.COMPLAINT),
        ("AutoResponder", None),
        ("AddressChange", None),
        ("Unsubscribe", None),
    ],
)
async def test_bounce_types_map_onto_kinds(
    reader: PostmarkFeedback, bounce_type: str, kind: FeedbackKind | None
) -> None:
    reading = await reader.read(request(_body("postmark_bounce.json", Type=bounce_type), AUTH))

    assert [r.kind for r in reading.reports] == ([kind] if kind else [])


async def test_a_delivery_is_ignored(reader: PostmarkFeedback) -> None:
    reading = await reader.read(request(_body("postmark_delivery.json"), AUTH))

    assert reading.reports == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        _basic(USER, "wrong"),
        _basic("someone", PASSWORD),
        _basic(USER, PASSWORD + "x"),
        {"authorization": "Bearer " + PASSWORD},
        {"authorization": "Basic not-base64!"},
        {"authorization": "Basic " + base64.b64encode("é:ü".encode()).decode()},
    ],
)
async def test_wrong_or_missing_credentials_are_refused(
    reader: PostmarkFeedback, headers: dict[str, str]
) -> None:
    refused = await _refused(reader, _body("postmark_bounce.json"), headers)

    assert (refused.status, refused.code) == (401, "bad_signature")
    assert PASSWORD not in str(refused)


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", json.dumps({"RecordType": "Bounce", "Type": "HardBounce"})]
)
async def test_an_unreadable_record_is_400(reader: PostmarkFeedback, body: bytes | str) -> None:
    raw = body.encode() if isinstance(body, str) else body

    refused = await _refused(reader, raw, AUTH)

    assert (refused.status, refused.code) == (400, "invalid_feedback")


@pytest.mark.parametrize(("user", "password"), [("", "x"), ("u", ""), ("a:b", "x")])
def test_credentials_that_cannot_work_stop_the_start(user: str, password: str) -> None:
    with pytest.raises(ValueError):
        PostmarkFeedback(user, password)
