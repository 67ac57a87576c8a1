"""SendGrid's Event Webhook, with "Signed Event Webhook Requests" on.

SendGrid signs `{X-Twilio-Email-Event-Webhook-Timestamp}{raw body}` with ECDSA P-256 over SHA-256
and sends the DER signature base64 in X-Twilio-Email-Event-Webhook-Signature; the verification
key it shows in its mail settings is the base64 DER public key. The body is a JSON array of events
("Event Webhook reference": `email`, `timestamp`, `event`, `smtp-id`, `type`, `reason`).
"""

import base64
import binascii
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field, TypeAdapter

from api.feedback.reading import (
    ProviderModel,
    bad_signature,
    feedback_report,
    fresh_timestamp,
    header,
    parse_json,
)
from api.feedback.source import FeedbackReading, FeedbackRequest
from domain.feedback import FeedbackKind, FeedbackReport

PROVIDER = "sendgrid"

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
TOLERANCE_SECONDS = 600
"""How old a signed call may be: SendGrid posts at once, and retries are signed anew."""


class SendGridEvent(ProviderModel):
    event: str
    email: str = ""
    timestamp: int
    smtp_id: str | None = Field(default=None, alias="smtp-id")
    """The Message-ID header the email carried, `<...>`."""
    type: str | None = None
    """For `bounce`: "bounce" (the address refused it) or "blocked" (the receiving server did)."""
    reason: str | None = None

    def kind(self) -> FeedbackKind | None:
        if self.event == "bounce":
            return FeedbackKind.SOFT_BOUNCE if self.type == "blocked" else FeedbackKind.HARD_BOUNCE
        if self.event == "dropped":
            # SendGrid drops mail to an address that bounced before; other drops (unsubscribed,
            # spam-reporting, invalid) are its own lists, not news about the address.
            return FeedbackKind.HARD_BOUNCE if self.reason == "Bounced Address" else None
        if self.event == "deferred":
            return FeedbackKind.SOFT_BOUNCE
        if self.event == "spamreport":
            return FeedbackKind.COMPLAINT
        return None  # processed, delivered, open, click, unsubscribe, group_*...

    def report(self, kind: FeedbackKind) -> FeedbackReport:
        at = datetime.fromtimestamp(self.timestamp, UTC)
        return feedback_report(PROVIDER, kind, self.email, self.smtp_id, at)


_EVENTS = TypeAdapter(list[SendGridEvent])


def verification_key(encoded: str) -> ec.EllipticCurvePublicKey:
    """The key SendGrid shows, or ValueError saying what it should be (checked at start-up)."""
    try:
        key = serialization.load_der_public_key(base64.b64decode(encoded.strip(), validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("the SendGrid verification key is not a base64 public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the SendGrid verification key is not a P-256 (ECDSA) key")
    return key


class SendGridFeedback:
    """SendGrid's signed Event Webhook: `POST /feedback/v1/sendgrid`."""

    def __init__(self, key: str, now: Callable[[], float] = time.time) -> None:
        self._key = verification_key(key)
        self._now = now

    @property
    def name(self) -> str:
        return PROVIDER

    async def read(self, request: FeedbackRequest) -> FeedbackReading:
        self._verify(request)
        events = parse_json(_EVENTS, request.body, "the SendGrid events")
        return FeedbackReading(
            reports=[event.report(kind) for event in events if (kind := event.kind()) is not None]
        )

    def _verify(self, request: FeedbackRequest) -> None:
        offered = header(request.headers, SIGNATURE_HEADER)
        timestamp = header(request.headers, TIMESTAMP_HEADER)
        if offered is None:
            raise bad_signature("the SendGrid signature is missing")
        fresh_timestamp(timestamp, TOLERANCE_SECONDS, self._now())
        try:
            signature = base64.b64decode(offered, validate=True)
        except binascii.Error:
            raise bad_signature("the SendGrid signature is not base64") from None
        signed = (timestamp or "").encode() + request.body
        try:
            self._key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise bad_signature("the SendGrid signature does not match the call") from None
