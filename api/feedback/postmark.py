"""Postmark's bounce and spam-complaint webhooks.

Postmark does not sign its webhooks; it offers HTTP basic auth in the webhook's URL
(`https://user:password@host/feedback/v1/postmark`), which it sends as an Authorization header on
every call. Payloads follow Postmark's "Bounce webhook" and "Spam complaint webhook" pages: one
JSON object per call with `RecordType`, `Type`, `Email`, `BouncedAt` and `MessageID`.

`MessageID` is Postmark's own id, not the Message-ID header we gave the email. Ours is read from
`Headers` (`[{"Name": "Message-ID", "Value": ...}]`) when the payload carries them, else from the
`message_id` key of `Metadata` (an email sent through Postmark's SMTP with the header
`X-PM-Metadata-message_id: <its Message-ID>` carries it back); without either, the report has no
Message-ID and links to no step.
"""

import base64
import binascii
import hmac

from pydantic import AwareDatetime, Field, TypeAdapter

from api.feedback.reading import (
    ProviderModel,
    bad_signature,
    feedback_report,
    header,
    invalid_feedback,
    parse_json,
)
from api.feedback.source import FeedbackReading, FeedbackRequest
from domain.feedback import FeedbackKind

PROVIDER = "postmark"

METADATA_MESSAGE_ID = "message_id"
"""The Metadata key that carries our Message-ID back, when the sender set it."""

HARD_BOUNCE_TYPES = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
"""The address does not exist, or Postmark has deactivated it: it will not take mail again."""
SOFT_BOUNCE_TYPES = frozenset(
    {"SoftBounce", "Transient", "DnsError", "Blocked", "SpamNotification", "DMARCPolicy", "Unknown"}
)
"""Failures that may pass (a full mailbox, a DNS outage, a receiving server refusing for now, a
sender domain's DMARC policy): counted, the address kept. Other Types (AutoResponder,
AddressChange, Subscribe, Unsubscribe, ChallengeVerification, OpenRelayTest, ...) are not about
the address's deliverability and are ignored."""


class PostmarkHeader(ProviderModel):
    name: str = Field(alias="Name")
    value: str = Field(alias="Value")


class PostmarkRecord(ProviderModel):
    record_type: str = Field(alias="RecordType")
    type: str | None = Field(default=None, alias="Type")
    email: str = Field(default="", alias="Email")
    bounced_at: AwareDatetime | None = Field(default=None, alias="BouncedAt")
    """When the bounce or the complaint happened."""
    headers: list[PostmarkHeader] = Field(default=[], alias="Headers")
    metadata: dict[str, str] = Field(default={}, alias="Metadata")

    def kind(self) -> FeedbackKind | None:
        if self.record_type == "SpamComplaint" or self.type == "SpamComplaint":
            return FeedbackKind.COMPLAINT
        if self.record_type != "Bounce":
            return None  # Delivery, Open, Click, SubscriptionChange
        if self.type in HARD_BOUNCE_TYPES:
            return FeedbackKind.HARD_BOUNCE
        if self.type in SOFT_BOUNCE_TYPES:
            return FeedbackKind.SOFT_BOUNCE
        return None

    def our_message_id(self) -> str | None:
        for item in self.headers:
            if item.name.lower() == "message-id":
                return item.value
        return self.metadata.get(METADATA_MESSAGE_ID)


_RECORD = TypeAdapter(PostmarkRecord)


class PostmarkFeedback:
    """Postmark's bounce and spam-complaint webhooks: `POST /feedback/v1/postmark`."""

    def __init__(self, user: str, password: str) -> None:
        if not user or not password or ":" in user:
            raise ValueError("Postmark's webhook needs a user (without ':') and a password")
        self._credentials = f"{user}:{password}".encode()

    @property
    def name(self) -> str:
        return PROVIDER

    async def read(self, request: FeedbackRequest) -> FeedbackReading:
        self._verify(request)
        record = parse_json(_RECORD, request.body, "the Postmark record")
        kind = record.kind()
        if kind is None:
            return FeedbackReading()
        if record.bounced_at is None:
            raise invalid_feedback("the Postmark record has no BouncedAt")
        report = feedback_report(
            PROVIDER, kind, record.email, record.our_message_id(), record.bounced_at
        )
        return FeedbackReading(reports=[report])

    def _verify(self, request: FeedbackRequest) -> None:
        scheme, _, encoded = (header(request.headers, "authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            raise bad_signature("Postmark's call has no basic auth credentials")
        try:
            offered = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            raise bad_signature("Postmark's credentials are not base64") from None
        # Constant time: how much of a guess matched must not show in how long we take.
        if not hmac.compare_digest(offered, self._credentials):
            raise bad_signature("Postmark's credentials do not match")
