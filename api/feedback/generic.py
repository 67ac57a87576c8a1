"""Our own form for any relay without a reader of its own: a signed JSON list of events.

Signed exactly as our outgoing event webhooks are (Standard Webhooks, domain.webhook_signing), so
a relay's glue code signs it with any Standard Webhooks library: headers `webhook-id`,
`webhook-timestamp` and `webhook-signature` (`v1,<base64 HMAC-SHA256>` of
`{webhook-id}.{webhook-timestamp}.{body}`, several space-separated while a secret rotates).
"""

import hmac
import time
from collections.abc import Callable

from pydantic import AwareDatetime, Field, TypeAdapter

from api.feedback.reading import (
    bad_signature,
    feedback_report,
    fresh_timestamp,
    header,
    parse_json,
)
from api.feedback.source import FeedbackReading, FeedbackRequest
from domain.base import CamelModel
from domain.feedback import FeedbackKind
from domain.webhook_signing import check_secret, signature

PROVIDER = "generic"

TOLERANCE_SECONDS = 300
"""Standard Webhooks' own tolerance, which its libraries apply when they verify."""


class GenericEvent(CamelModel):
    type: FeedbackKind
    email: str = Field(min_length=3, max_length=320)
    message_id: str | None = None
    """The Message-ID header of the email the event is about, with or without `<>`."""
    occurred_at: AwareDatetime


class GenericFeedbackBody(CamelModel):
    """Our documented form: unknown fields are refused, so a typo is an error, not lost data."""

    events: list[GenericEvent] = Field(max_length=1000)


_BODY = TypeAdapter(GenericFeedbackBody)


class GenericFeedback:
    """The signed generic form: `POST /feedback/v1/generic`."""

    def __init__(self, secret: str, now: Callable[[], float] = time.time) -> None:
        self._secret = check_secret(secret)
        self._now = now

    @property
    def name(self) -> str:
        return PROVIDER

    async def read(self, request: FeedbackRequest) -> FeedbackReading:
        self._verify(request)
        body = parse_json(_BODY, request.body, "the feedback body")
        return FeedbackReading(
            reports=[
                feedback_report(PROVIDER, e.type, e.email, e.message_id, e.occurred_at)
                for e in body.events
            ]
        )

    def _verify(self, request: FeedbackRequest) -> None:
        webhook_id = header(request.headers, "webhook-id")
        offered = header(request.headers, "webhook-signature")
        if webhook_id is None or offered is None:
            raise bad_signature("the webhook-id or webhook-signature header is missing")
        timestamp = fresh_timestamp(
            header(request.headers, "webhook-timestamp"), TOLERANCE_SECONDS, self._now()
        )
        expected = signature(self._secret, webhook_id, timestamp, request.body).encode()
        # As bytes: compare_digest refuses str with non-ASCII characters, which a caller may send.
        if not any(hmac.compare_digest(expected, one.encode()) for one in offered.split()):
            raise bad_signature("the webhook signature does not match the call")
