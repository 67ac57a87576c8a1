"""The SMS provider's inbound webhook: a buyer's reply STOP suppresses their number, START lifts it.

Twilio posts each reply to our number as a form (From, To, Body, ...) signed with
`X-Twilio-Signature` (domain.sms.twilio_signature: the public URL it posted to, the sorted form,
the account's auth token). No API key: the signature is the proof, and a bad one is refused
with 403. The answer is empty TwiML, so Twilio sends no reply of its own; the carriers confirm an
opt-out to the buyer themselves.

A STOP needs no signal to the buyer's flows: each SMS step looks the number up in the
suppressions before it texts (store.sms_sends), and records `sms_stop`.
"""

import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response

from domain.sms import InboundCommand, e164, inbound_command, twilio_signature
from store.sms_sends import SmsStops

logger = logging.getLogger(__name__)

INBOUND_PATH = "/sms/v1/inbound"
SIGNATURE_HEADER = "X-Twilio-Signature"
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


@dataclass(frozen=True)
class SmsInbound:
    auth_token: str
    """The provider account's auth token (CHECKOUT_RECOVERY_SMS_AUTH_TOKEN), which signs."""
    public_url: str
    """Where the provider reaches us (CHECKOUT_RECOVERY_PUBLIC_URL): the signed URL starts here."""


def sms_router(config: SmsInbound, stops: SmsStops) -> APIRouter:
    router = APIRouter(tags=["sms"])
    base = config.public_url.rstrip("/")

    @router.post(
        INBOUND_PATH,
        summary="The SMS provider's inbound message webhook (STOP / START)",
        responses={403: {"description": "The X-Twilio-Signature does not match"}},
    )
    async def inbound(request: Request) -> Response:
        params = parse_qsl((await request.body()).decode("utf-8", "replace"), True)
        url = base + INBOUND_PATH + (f"?{request.url.query}" if request.url.query else "")
        given = request.headers.get(SIGNATURE_HEADER, "")
        expected = twilio_signature(config.auth_token, url, params)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return Response("bad signature", status_code=403, media_type="text/plain")
        form = dict(params)
        command = inbound_command(form.get("Body", ""))
        number = e164(form.get("From", ""))
        if command is not None and number is not None:
            if command is InboundCommand.STOP:
                changed = await stops.stop(number, datetime.now(UTC))
            else:
                changed = await stops.start(number)
            # Never the number: only what was asked and whether it changed anything.
            logger.info("SMS %s received (%s)", command, "applied" if changed else "no change")
        return Response(_EMPTY_TWIML, media_type="text/xml")

    return router
