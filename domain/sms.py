"""SMS rules that need no I/O: who may get a recovery SMS, how long a text is, what a reply means.

The provider's signature rule (Twilio's `X-Twilio-Signature`) lives here too: the inbound route
checks it and the tests sign with it, one copy.
"""

import base64
import hashlib
import hmac
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import SecretStr

from domain.activity import NotSentReason
from domain.checkout import AbandonedCheckout

MAX_SEGMENTS = 10
"""A text longer than this many segments is refused at `policy check`: carriers drop or truncate
long concatenated messages, and each segment is billed."""

_SEPARATORS = re.compile(r"[\s.\-()]")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


def e164(phone: str) -> str | None:
    """`phone` in E.164 (`+4930123456`) once spaces, dots, dashes and parentheses are removed;
    None when it is not (no leading `+`, too short or long, letters): a number we cannot be sure
    reaches the buyer is not texted."""
    compact = _SEPARATORS.sub("", phone)
    return compact if _E164.fullmatch(compact) else None


def sms_refusal(checkout: AbandonedCheckout) -> NotSentReason | None:
    """Why this checkout's buyer may not get a recovery SMS (None: they may).

    The one rule: the flow's decision (domain.schedule) and the activity's look at the store's
    record both ask it. Consent is SMS's own (`smsConsent`, absent means no), apart from email's.
    """
    if checkout.sms_consent is not True:
        return NotSentReason.NO_SMS_CONSENT
    phone = checkout.contact_details.phone
    if not phone or not phone.strip():
        return NotSentReason.NO_PHONE
    if e164(phone) is None:
        return NotSentReason.INVALID_PHONE
    return None


class SmsEncoding(StrEnum):
    GSM_7 = "GSM-7"
    UCS_2 = "UCS-2"


# The GSM 03.38 default alphabet, and its extension table (each of those costs two septets).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsLength:
    characters: int
    """As the encoding counts them: septets for GSM-7 (an extension character is two), UTF-16
    code units for UCS-2 (an emoji is two)."""
    segments: int
    encoding: SmsEncoding

    @property
    def too_long(self) -> bool:
        return self.segments > MAX_SEGMENTS


def sms_length(text: str) -> SmsLength:
    """How the network splits `text`: GSM-7 when every character is in its alphabet (160 in one
    segment, 153 each when concatenated), else UCS-2 (70, then 67)."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        units = sum(2 if c in _GSM_EXTENDED else 1 for c in text)
        single, part, encoding = 160, 153, SmsEncoding.GSM_7
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part, encoding = 70, 67, SmsEncoding.UCS_2
    segments = 1 if units <= single else math.ceil(units / part)
    return SmsLength(characters=units, segments=segments, encoding=encoding)


@dataclass(frozen=True)
class SmsProviderConfig:
    """How the worker reaches the SMS provider (CHECKOUT_RECOVERY_SMS_*)."""

    base_url: str
    account_sid: str
    auth_token: SecretStr
    from_number: str
    """An E.164 number of the account, or a messaging service's sender id."""


class InboundCommand(StrEnum):
    STOP = "stop"
    START = "start"


_STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
_START_WORDS = frozenset({"START", "UNSTOP"})


def inbound_command(body: str) -> InboundCommand | None:
    """What a buyer's reply asks for: the carriers' opt-out and opt-in keywords, the whole
    message, any case; None for anything else (a question, a thank-you)."""
    word = body.strip().upper()
    if word in _STOP_WORDS:
        return InboundCommand.STOP
    if word in _START_WORDS:
        return InboundCommand.START
    return None


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's request signature: base64 of HMAC-SHA1, keyed by the account's auth token, over
    the full URL it posted to followed by each POST parameter's name and value, sorted by name.

    A name given twice counts each distinct value once, in order (as Twilio's own validator)."""
    data = url + "".join(name + value for name, value in sorted(set(params)))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()
