"""SES through SNS. Shapes: AWS's "HTTP/HTTPS notification JSON format" and "subscription
confirmation JSON format" pages for the SNS envelopes, and SES's "Contents of notifications" /
"Examples of event data" for the Message inside; signed as "Verifying the signatures of Amazon
SNS messages" describes. AWS is outside the project: the one stand-in is the getter, which serves
a certificate the test made and records the URLs it was asked for."""

import base64
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from api.feedback.ses import FetchError, SesFeedback, httpx_get
from api.feedback.source import FeedbackRefusedError
from domain.feedback import FeedbackKind, FeedbackReport
from tests.feedback.support import request, sample

TOPIC = "arn:aws:sns:us-west-2:123456789012:ses-feedback"
CERT_URL = (
    "https://sns.us-west-2.amazonaws.com/"
    "SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
)
_HASHES: dict[str, hashes.HashAlgorithm] = {"1": hashes.SHA1(), "2": hashes.SHA256()}


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass
class Aws:
    """SNS's side: the signing key, the certificate it serves, and who fetched what."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    fetched: list[str] = field(default_factory=list)

    async def get(self, url: str) -> bytes:
        self.fetched.append(url)
        if url == CERT_URL:
            return _certificate(self.key)
        if url.startswith("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription"):
            return b"<ConfirmSubscriptionResponse/>"
        raise FetchError("HTTP 404")

    def sign(self, message: dict[str, Any], version: str = "1") -> bytes:
        """The message as SNS posts it, signed over its documented string."""
        message = {**message, "SignatureVersion": version}
        if message["Type"] == "Notification":
            names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        else:
            names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn"]
            names.append("Type")
        signed = "".join(f"{n}\n{message[n]}\n" for n in names if n in message).encode()
        signature = self.key.sign(signed, padding.PKCS1v15(), _HASHES[version])
        message["Signature"] = base64.b64encode(signature).decode()
        return json.dumps(message).encode()


def _notification(ses_sample: str, **changes: Any) -> dict[str, Any]:
    return {**sample("sns_notification.json"), "Message": json.dumps(sample(ses_sample)), **changes}


@pytest.fixture
def aws() -> Aws:
    return Aws()


@pytest.fixture
def reader(aws: Aws) -> SesFeedback:
    return SesFeedback([TOPIC], aws.get)


async def _refused(reader: SesFeedback, body: bytes) -> FeedbackRefusedError:
    with pytest.raises(FeedbackRefusedError) as refused:
        await reader.read(request(body))
    return refused.value


@pytest.mark.parametrize("version", ["1", "2"])
async def test_a_permanent_bounce_reports_each_recipient_as_hard(
    aws: Aws, reader: SesFeedback, version: str
) -> None:
    reading = await reader.read(request(aws.sign(_notification("ses_bounce.json"), version)))

    at = datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=UTC)
    our_id = "5f1c0e3a9b7d4e2f8a6c1b0d9e8f7a6b5c4d3e2f.recovery@shop.example"
    assert reading.reports == [
        FeedbackReport(
            provider="ses",
            kind=FeedbackKind.HARD_BOUNCE,
            email=email,
            message_id=our_id,
            occurred_at=at,
        )
        for email in ["jane@buyer.example", "richard@buyer.example"]
    ]
    assert reading.note is None


async def test_a_complaint_is_read_with_the_message_id_from_the_headers(
    aws: Aws, reader: SesFeedback
) -> None:
    reading = await reader.read(request(aws.sign(_notification("ses_complaint.json"))))

    [report] = reading.reports
    assert report.kind is FeedbackKind.COMPLAINT
    assert report.email == "richard@buyer.example"
    assert report.message_id == "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567.recovery@shop.example"


async def test_a_transient_bounce_is_soft_and_ses_own_id_is_not_taken_for_ours(
    aws: Aws, reader: SesFeedback
) -> None:
    reading = await reader.read(request(aws.sign(_notification("ses_transient_bounce.json"), "2")))

    [report] = reading.reports
    assert report.kind is FeedbackKind.SOFT_BOUNCE
    # The event-publishing sample has no Message-ID header, and commonHeaders repeats SES's id.
    assert report.message_id is None
    assert report.occurred_at == datetime(2017, 8, 5, 0, 41, 2, 669000, tzinfo=UTC)


async def test_a_delivery_is_verified_and_ignored(aws: Aws, reader: SesFeedback) -> None:
    reading = await reader.read(request(aws.sign(_notification("ses_delivery.json"))))

    assert reading.reports == []


async def test_a_subscription_is_confirmed_by_calling_its_subscribe_url(
    aws: Aws, reader: SesFeedback
) -> None:
    message = sample("sns_subscription_confirmation.json")

    reading = await reader.read(request(aws.sign(message)))

    assert reading.note == "subscription confirmed"
    assert reading.reports == []
    assert aws.fetched == [CERT_URL, message["SubscribeURL"]]


async def test_a_tampered_message_is_refused(aws: Aws, reader: SesFeedback) -> None:
    signed = json.loads(aws.sign(_notification("ses_bounce.json")))
    bounce = json.loads(signed["Message"])
    bounce["bounce"]["bouncedRecipients"][0]["emailAddress"] = "someone-else@buyer.example"
    signed["Message"] = json.dumps(bounce)

    refused = await _refused(reader, json.dumps(signed).encode())

    assert (refused.status, refused.code) == (401, "bad_signature")
    assert "buyer.example" not in str(refused)


async def test_a_message_signed_by_another_key_is_refused(aws: Aws, reader: SesFeedback) -> None:
    forger = Aws()

    refused = await _refused(reader, forger.sign(_notification("ses_bounce.json")))

    assert refused.status == 401


async def test_a_subscription_with_a_tampered_subscribe_url_is_not_confirmed(
    aws: Aws, reader: SesFeedback
) -> None:
    signed = json.loads(aws.sign(sample("sns_subscription_confirmation.json")))
    signed["SubscribeURL"] = "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&x=1"

    refused = await _refused(reader, json.dumps(signed).encode())

    assert refused.status == 401
    assert aws.fetched == [CERT_URL]


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/SimpleNotificationService-abc.pem",
        "http://sns.us-west-2.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-west-2.amazonaws.com.evil.example/SimpleNotificationService-abc.pem",
        "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-abc.pem\n",
        "https://sns.us-west-2.amazonaws.com/other/SimpleNotificationService-abc.pem",
    ],
)
async def test_a_certificate_off_the_sns_pattern_is_refused_and_not_fetched(
    aws: Aws, reader: SesFeedback, url: str
) -> None:
    body = aws.sign(_notification("ses_bounce.json", SigningCertURL=url))

    refused = await _refused(reader, body)

    assert (refused.status, refused.code) == (401, "bad_signature")
    assert aws.fetched == []


async def test_a_topic_off_the_allow_list_is_refused_even_when_signed(aws: Aws) -> None:
    reader = SesFeedback(["arn:aws:sns:us-west-2:123456789012:other"], aws.get)

    refused = await _refused(reader, aws.sign(_notification("ses_bounce.json")))
    confirm = await _refused(reader, aws.sign(sample("sns_subscription_confirmation.json")))

    assert refused.status == confirm.status == 401
    # Someone else's topic: its subscription is never confirmed.
    assert all("ConfirmSubscription" not in url for url in aws.fetched)


async def test_the_certificate_is_fetched_once_per_url(aws: Aws, reader: SesFeedback) -> None:
    for name in ["ses_bounce.json", "ses_complaint.json", "ses_delivery.json"]:
        await reader.read(request(aws.sign(_notification(name))))

    assert aws.fetched == [CERT_URL]


async def test_a_certificate_that_cannot_be_fetched_is_a_passing_failure(aws: Aws) -> None:
    async def unreachable(url: str) -> bytes:
        raise FetchError("ConnectTimeout")

    refused = await _refused(
        SesFeedback([TOPIC], unreachable), aws.sign(_notification("ses_bounce.json"))
    )

    assert (refused.status, refused.code) == (503, "provider_unreachable")


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"Type": "Notification"}', b'{"Type": "Other"}'],
)
async def test_an_unreadable_body_is_400(reader: SesFeedback, body: bytes) -> None:
    refused = await _refused(reader, body)

    assert (refused.status, refused.code) == (400, "invalid_feedback")


async def test_a_signed_message_that_is_not_an_ses_notification_is_400(
    aws: Aws, reader: SesFeedback
) -> None:
    body = aws.sign({**sample("sns_notification.json"), "Message": "hello jane@buyer.example"})

    refused = await _refused(reader, body)

    assert (refused.status, refused.code) == (400, "invalid_feedback")
    assert "jane" not in str(refused)


async def test_a_subscribe_url_off_sns_is_not_called_even_when_signed(
    aws: Aws, reader: SesFeedback
) -> None:
    message = {
        **sample("sns_subscription_confirmation.json"),
        "SubscribeURL": "https://evil.example/",
    }

    refused = await _refused(reader, aws.sign(message))

    assert refused.status == 400
    assert aws.fetched == [CERT_URL]


class _Served(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = self.path == "/cert.pem"
        self.send_response(200 if found else 404)
        self.end_headers()
        self.wfile.write(b"PEM" if found else b"")

    def log_message(self, *args: object) -> None:
        pass


async def test_the_default_getter_fetches_and_fails_on_non_2xx() -> None:
    """httpx_get against a real local HTTP server (the reader's default, used against AWS)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Served)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        get = httpx_get(timeout_seconds=2)
        assert await get(base + "/cert.pem") == b"PEM"
        with pytest.raises(FetchError, match="404"):
            await get(base + "/missing")
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(FetchError):
        await get(base + "/cert.pem")
