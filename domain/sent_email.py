"""An email as the buyer received it, and the one rule that reads it out of a MIME message.

The same rule serves the copy the store keeps of each recovery email (activities.sent_copy, from
the message the step sent) and the dev mailbox (the messages the embedded SMTP server received):
what an operator sees is what the buyer's mail client gets, in both places.
"""

from dataclasses import dataclass
from email.header import decode_header, make_header
from email.headerregistry import BaseHeader
from email.message import Message


@dataclass(frozen=True)
class SentEmail:
    subject: str
    sender: str
    """The From header."""
    to: str
    date: str
    """The Date header, as sent (RFC 5322)."""
    message_id: str
    html: str | None
    """Shown in a sandboxed iframe: no script runs and it cannot reach the dashboard's origin."""
    text: str | None


def read_email(message: Message) -> SentEmail:
    """Headers decoded to text (encoded words included) and the first plain-text and HTML parts
    that are not attachments, decoded from their transfer encoding and charset.

    Works alike on a message as built (compat32, whose headers are the encoded strings sent) and
    on one parsed with the modern policy (whose headers are decoded already)."""
    html = text = None
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind == "text/html" and html is None:
            html = _decoded_body(part)
        elif kind == "text/plain" and text is None:
            text = _decoded_body(part)
    return SentEmail(
        subject=_header(message, "Subject"),
        sender=_header(message, "From"),
        to=_header(message, "To"),
        date=_header(message, "Date"),
        message_id=_header(message, "Message-ID"),
        html=html,
        text=text,
    )


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    if value is None:
        return ""
    if isinstance(value, BaseHeader):
        return str(value)  # the modern policy decoded it when parsing
    # compat32 keeps what was written: a Header object or a string that may hold encoded words.
    return str(make_header(decode_header(str(value))))


def _decoded_body(part: Message) -> str | None:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return None
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know: show what UTF-8 makes of it
        return payload.decode("utf-8", errors="replace")
