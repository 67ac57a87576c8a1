"""Building the MIME message of a recovery email: plain text first, HTML as the alternative."""

import hashlib
import io
import re
from dataclasses import dataclass
from datetime import datetime
from email.base64mime import body_encode as base64_body
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.policy import Compat32
from email.utils import format_datetime, formataddr, getaddresses
from functools import cached_property

from activities.dkim import DkimSigner
from activities.rendering import RenderedEmail

# What may not reach a header from buyer data: the C0 and C1 controls (Unicode category Cc: CR,
# LF, tab, NUL, NEL, ...) and the line and paragraph separators, at which some clients break lines.
_HEADER_BREAKERS = re.compile(r"[ ]*[\x00-\x1f\x7f-\x9f\u2028\u2029]+[ ]*")


def header_text(value: str) -> str:
    """`value` as one header-safe line: each run of control characters becomes one space.

    A name such as "Ada\\r\\nBcc: x@evil" would otherwise end the header and start another.
    """
    return _HEADER_BREAKERS.sub(" ", value).strip(" ")


@dataclass(frozen=True)
class Sender:
    """Who recovery emails come from; `mail_from` is an RFC 5322 address, name optional."""

    mail_from: str
    reply_to: str | None = None
    """Where replies go, when not to `mail_from`."""
    message_id_domain: str | None = None
    """The domain of Message-IDs, when not `mail_from`'s."""
    dkim: DkimSigner | None = None
    """Who signs its emails (activities.dkim.signer_for); None: the relay signs, or nobody."""

    @cached_property
    def address(self) -> str:
        """The bare address, for the SMTP envelope."""
        return getaddresses([self.mail_from])[0][1]

    @cached_property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] or "localhost"

    @property
    def id_domain(self) -> str:
        """What Message-IDs end with."""
        return self.message_id_domain or self.domain

    @cached_property
    def header(self) -> str:
        """The From header: a non-ASCII name is encoded on its own, the address stays readable
        (one encoded word over the whole value would hide the address from every client)."""
        return formataddr(getaddresses([header_text(self.mail_from)])[0], charset="utf-8")


@dataclass(frozen=True)
class Unsubscribe:
    """Where the buyer unsubscribes: one-click https (RFC 8058) and mailto."""

    url: str
    mailto: str


def message_id_for(key: str, domain: str) -> str:
    """A Message-ID that is the same on every retry of a step, and reveals nothing of the key."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"<{digest}.recovery@{domain}>"


FEEDBACK_SENDER_ID = "checkout-recovery"
"""The last field of every Feedback-ID: the sender's own id, the same on all its mail."""


def feedback_id(step: int, template: str, shop_id: str) -> str:
    """The Feedback-ID header (Gmail's feedback loop, `a:b:c:SenderId`): complaints are counted
    per step, template and shop in Postmaster Tools. Slugs only, never anything of the buyer;
    a template name and a shop id hold no colon (domain.policy, domain.shops)."""
    return f"step-{step}:{template}:{shop_id}:{FEEDBACK_SENDER_ID}"


def build_message(
    rendered: RenderedEmail,
    *,
    sender: Sender,
    to_address: str,
    to_name: str | None,
    message_id: str,
    sent_at: datetime,
    unsubscribe: Unsubscribe | None = None,
    feedback: str | None = None,
) -> Message:
    """A multipart/alternative message: plain text first, HTML as the richer alternative.

    Built as compat32 messages: the modern EmailMessage API parses every header it is given,
    which made building a message cost more than sending it. The headers and payloads are those
    `MIMEMultipart("alternative", boundary=...)` and `MIMEText(text, subtype, "utf-8")` make,
    set directly (see `_text_part`).
    """
    # A boundary derived from the Message-ID: the generator would otherwise draw a random one
    # and scan both bodies for it with a freshly compiled regex, on every message.
    boundary = "=_recovery_" + hashlib.sha256(message_id.encode()).hexdigest()[:32]
    message = Message()
    message["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
    message["MIME-Version"] = "1.0"
    message["From"] = sender.header
    if sender.reply_to:
        message["Reply-To"] = formataddr(
            getaddresses([header_text(sender.reply_to)])[0], charset="utf-8"
        )
    # Every header below carries buyer data (a name, the rendered subject, links holding the
    # checkout's id): each is made one clean line first, so none can end early or add a header.
    to_name = header_text(to_name) if to_name else ""
    message["To"] = formataddr((to_name, header_text(to_address)), charset="utf-8")
    subject = header_text(rendered.subject)
    message["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id
    if feedback is not None:
        message["Feedback-ID"] = feedback
    if unsubscribe is not None:
        # RFC 2369 header plus RFC 8058's one-click marker: mail clients show an unsubscribe
        # button that POSTs "List-Unsubscribe=One-Click" to the https address.
        message["List-Unsubscribe"] = header_text(f"<{unsubscribe.url}>, <{unsubscribe.mailto}>")
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.attach(_text_part(rendered.text, "plain"))
    message.attach(_text_part(rendered.html, "html"))
    return message


def _text_part(text: str, subtype: str) -> Message:
    """What `MIMEText(text, subtype, "utf-8")` makes: the same headers in the same order and the
    same base64 payload (76-character lines), for a third of the cost. MIMEText gets there by
    adding the charset parameter to a Content-Type header it has just written, which parses
    that header back twice. The one difference: `get_charset()` answers None, not utf-8 (the
    generator never asks; the charset is in the Content-Type header either way)."""
    part = Message()
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["MIME-Version"] = "1.0"
    part["Content-Transfer-Encoding"] = "base64"
    # Raises UnicodeEncodeError for a lone surrogate, as MIMEText does.
    part.set_payload(base64_body(text.encode("utf-8")))
    return part


# A header value that compat32 folding leaves exactly as it is once it fits on one line: printable
# ASCII words separated by single spaces (no leading, trailing or repeated whitespace, no controls).
_PLAIN_HEADER_VALUE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")


class _Compat32ShortHeaders(Compat32):
    """compat32 with a shortcut for short plain headers, which are most of a recovery email's.

    compat32 folds every header through `email.header.Header` (splitting the value into chunks
    and joining them again); for a plain ASCII value that fits on one line that gives back
    `name: value` unchanged, at two thirds of the cost of flattening the whole message. Any
    other value (long, non-ASCII, encoded words already made, odd whitespace) takes the
    standard path, so the bytes are the same as compat32's in every case.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        if (
            isinstance(value, str)
            and len(name) + 2 + len(value) < (self.max_line_length or 78)
            and _PLAIN_HEADER_VALUE.fullmatch(value)
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_SHORT_HEADERS_POLICIES = {
    "8bit": _Compat32ShortHeaders(),
    "7bit": _Compat32ShortHeaders(cte_type="7bit"),
}
"""One policy per transfer encoding aiosmtplib may ask for, made once."""


def flatten_message(message: Message, *, cte_type: str = "8bit") -> bytes:
    """The bytes aiosmtplib's `flatten_message` sends for a compat32 message (without Bcc), by
    the same generator and policy, with short plain headers written directly."""
    policy = _SHORT_HEADERS_POLICIES[cte_type]
    with io.BytesIO() as output:
        BytesGenerator(output, policy=policy).flatten(message)
        return output.getvalue()
