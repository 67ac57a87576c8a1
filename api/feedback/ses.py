"""Amazon SES bounces and complaints, delivered by SNS to an HTTPS subscription.

SNS signs each message with the key of a certificate it serves at SigningCertURL; the signed
string is built from the message's fields in the order SNS documents ("Verifying the signatures
of Amazon SNS messages"). The URL is checked against the SNS host pattern before anything is
fetched, so a forged message cannot make us fetch a key of its choosing.

Any AWS account can publish to its own topic and subscribe our endpoint to it, and SNS signs
that too: the signature proves only that SNS sent the message. So only topics on the allow-list
are read (or confirmed), and the reader exists only when the list is set (api.feedback.sources).
"""

import base64
import binascii
import logging
import re
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import Literal

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import AwareDatetime, Field, TypeAdapter

from api.feedback.reading import (
    ProviderModel,
    bad_signature,
    feedback_report,
    invalid_feedback,
    parse_json,
)
from api.feedback.source import FeedbackReading, FeedbackRefusedError, FeedbackRequest
from domain.feedback import FeedbackKind, FeedbackReport

logger = logging.getLogger(__name__)

PROVIDER = "ses"

SIGNING_CERT_URL = re.compile(
    r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/SimpleNotificationService-[A-Za-z0-9]+\.pem"
)
"""Where SNS serves its signing certificates; matched whole (re.fullmatch)."""
SNS_URL = re.compile(r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^\s@]*")
"""An SubscribeURL we are willing to call: an SNS endpoint, nothing else."""

CACHED_CERTIFICATES = 32
"""SNS uses one certificate per region at a time: a few, rotated now and then."""

HttpGet = Callable[[str], Awaitable[bytes]]
"""Fetches a URL's body, FetchError when it cannot; injectable, as AWS is outside the project."""


class FetchError(Exception):
    """A certificate or the SubscribeURL could not be fetched (network, or not 2xx)."""


def httpx_get(timeout_seconds: float = 5.0) -> HttpGet:
    """The default getter: one short GET, no redirects (a redirect could leave the SNS host)."""

    async def get(url: str) -> bytes:
        try:
            async with httpx.AsyncClient(timeout=timeout_seconds) as client:
                response = await client.get(url)
        except httpx.HTTPError as err:
            raise FetchError(type(err).__name__) from None
        if not response.is_success:
            raise FetchError(f"HTTP {response.status_code}")
        return response.content

    return get


class SnsMessage(ProviderModel):
    type: Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"] = Field(
        alias="Type"
    )
    message_id: str = Field(alias="MessageId")
    topic_arn: str = Field(alias="TopicArn")
    message: str = Field(alias="Message")
    timestamp: str = Field(alias="Timestamp")
    """Kept as sent: it is part of the signed string."""
    subject: str | None = Field(default=None, alias="Subject")
    token: str | None = Field(default=None, alias="Token")
    subscribe_url: str | None = Field(default=None, alias="SubscribeURL")
    signature_version: Literal["1", "2"] = Field(alias="SignatureVersion")
    signature: str = Field(alias="Signature")
    signing_cert_url: str = Field(alias="SigningCertURL")

    def signed_string(self) -> bytes:
        """The fields SNS signs, "name\\nvalue\\n" each, in its documented order."""
        if self.type == "Notification":
            fields = [("Message", self.message), ("MessageId", self.message_id)]
            if self.subject is not None:
                fields.append(("Subject", self.subject))
            fields += [("Timestamp", self.timestamp), ("TopicArn", self.topic_arn)]
        else:
            if self.subscribe_url is None or self.token is None:
                raise invalid_feedback("a subscription message needs SubscribeURL and Token")
            fields = [
                ("Message", self.message),
                ("MessageId", self.message_id),
                ("SubscribeURL", self.subscribe_url),
                ("Timestamp", self.timestamp),
                ("Token", self.token),
                ("TopicArn", self.topic_arn),
            ]
        fields.append(("Type", self.type))
        return "".join(f"{name}\n{value}\n" for name, value in fields).encode()


class SesHeader(ProviderModel):
    name: str
    value: str


class SesCommonHeaders(ProviderModel):
    message_id: str | None = Field(default=None, alias="messageId")


class SesMail(ProviderModel):
    message_id: str | None = Field(default=None, alias="messageId")
    """SES's own id for the email, not the Message-ID header we gave it."""
    headers: list[SesHeader] = []
    common_headers: SesCommonHeaders | None = Field(default=None, alias="commonHeaders")

    def our_message_id(self) -> str | None:
        """The Message-ID header the email carried when we handed it to SES."""
        for item in self.headers:
            if item.name.lower() == "message-id":
                return item.value
        common = self.common_headers.message_id if self.common_headers else None
        # Some SES paths put their own id here; that one is never ours.
        return common if common != self.message_id else None


class SesRecipient(ProviderModel):
    email_address: str = Field(alias="emailAddress")


class SesBounce(ProviderModel):
    bounce_type: str = Field(alias="bounceType")
    bounced_recipients: list[SesRecipient] = Field(alias="bouncedRecipients")
    timestamp: AwareDatetime


class SesComplaint(ProviderModel):
    complained_recipients: list[SesRecipient] = Field(alias="complainedRecipients")
    timestamp: AwareDatetime
    complaint_feedback_type: str | None = Field(default=None, alias="complaintFeedbackType")


class SesNotification(ProviderModel):
    """Both shapes SES publishes: notifications (notificationType) and event publishing
    (eventType); the bounce and complaint objects are the same in both."""

    notification_type: str | None = Field(default=None, alias="notificationType")
    event_type: str | None = Field(default=None, alias="eventType")
    mail: SesMail | None = None
    bounce: SesBounce | None = None
    complaint: SesComplaint | None = None

    def reports(self) -> list[FeedbackReport]:
        kind_of_event = self.notification_type or self.event_type
        message_id = self.mail.our_message_id() if self.mail else None
        if kind_of_event == "Bounce":
            if self.bounce is None:
                raise invalid_feedback("a Bounce notification has no bounce")
            # Permanent: the address is gone. Transient and Undetermined may pass.
            kind = (
                FeedbackKind.HARD_BOUNCE
                if self.bounce.bounce_type == "Permanent"
                else FeedbackKind.SOFT_BOUNCE
            )
            return _each(kind, self.bounce.bounced_recipients, message_id, self.bounce.timestamp)
        if kind_of_event == "Complaint":
            if self.complaint is None:
                raise invalid_feedback("a Complaint notification has no complaint")
            # The reporting mailbox says the message is not spam: not a complaint.
            if self.complaint.complaint_feedback_type == "not-spam":
                return []
            return _each(
                FeedbackKind.COMPLAINT,
                self.complaint.complained_recipients,
                message_id,
                self.complaint.timestamp,
            )
        # Delivery, Send, Open, Click, DeliveryDelay, the subscription test message...
        return []


def _each(
    kind: FeedbackKind, recipients: list[SesRecipient], message_id: str | None, at: datetime
) -> list[FeedbackReport]:
    return [feedback_report(PROVIDER, kind, r.email_address, message_id, at) for r in recipients]


_SNS_MESSAGE = TypeAdapter(SnsMessage)
_SES_NOTIFICATION = TypeAdapter(SesNotification)
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


class SesFeedback:
    """SES events through SNS: `POST /feedback/v1/ses` as the topic's HTTPS subscription."""

    def __init__(self, topic_arns: Collection[str], get: HttpGet | None = None) -> None:
        if not topic_arns:
            raise ValueError("SES feedback needs the SNS topics it may read (SES_TOPIC_ARNS)")
        self._topics = frozenset(topic_arns)
        self._get = get or httpx_get()
        self._keys: dict[str, rsa.RSAPublicKey] = {}

    @property
    def name(self) -> str:
        return PROVIDER

    async def read(self, request: FeedbackRequest) -> FeedbackReading:
        message = parse_json(_SNS_MESSAGE, request.body, "the SNS message")
        await self._verify(message)
        if message.topic_arn not in self._topics:
            raise bad_signature("the SNS topic is not one this service reads")
        if message.type == "SubscriptionConfirmation":
            return await self._confirm(message)
        if message.type == "UnsubscribeConfirmation":
            return FeedbackReading(note="unsubscribe noted")
        notification = parse_json(_SES_NOTIFICATION, message.message, "the SES notification")
        return FeedbackReading(reports=notification.reports())

    async def _verify(self, message: SnsMessage) -> None:
        try:
            signature = base64.b64decode(message.signature, validate=True)
        except binascii.Error:
            raise bad_signature("the SNS signature is not base64") from None
        key = await self._key(message.signing_cert_url)
        algorithm = _HASHES[message.signature_version]()
        try:
            key.verify(signature, message.signed_string(), padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise bad_signature("the SNS signature does not match the message") from None

    async def _key(self, url: str) -> rsa.RSAPublicKey:
        if not SIGNING_CERT_URL.fullmatch(url):
            raise bad_signature("the signing certificate is not served by SNS")
        cached = self._keys.get(url)
        if cached is not None:
            return cached
        try:
            pem = await self._get(url)
        except FetchError as err:
            raise FeedbackRefusedError(
                503, "provider_unreachable", f"the SNS certificate could not be fetched: {err}"
            ) from None
        try:
            key = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError:
            raise bad_signature("the signing certificate is not readable") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise bad_signature("the signing certificate has no RSA key")
        if len(self._keys) >= CACHED_CERTIFICATES:
            self._keys.pop(next(iter(self._keys)))
        self._keys[url] = key
        return key

    async def _confirm(self, message: SnsMessage) -> FeedbackReading:
        url = message.subscribe_url or ""
        if not SNS_URL.fullmatch(url):
            raise invalid_feedback("the SubscribeURL is not an SNS address")
        try:
            await self._get(url)
        except FetchError as err:
            # 503, a passing failure: SNS retries the delivery, or the console resends it.
            raise FeedbackRefusedError(
                503, "provider_unreachable", f"the subscription could not be confirmed: {err}"
            ) from None
        logger.info("SNS subscription to %s confirmed", message.topic_arn)
        return FeedbackReading(note="subscription confirmed")
