"""Building the MIME message of a recovery email: plain text first, HTML as the alternative."""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses

from activities.rendering import RenderedEmail


@dataclass(frozen=True)
class Sender:
    """Who recovery emails come from; `mail_from` is an RFC 5322 address, name optional."""

    mail_from: str

    @property
    def domain(self) -> str:
        address = getaddresses([self.mail_from])[0][1]
        return address.rpartition("@")[2] or "localhost"


def message_id_for(key: str, domain: str) -> str:
    """A Message-ID that is the same on every retry of a step, and reveals nothing of the key."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"<{digest}.recovery@{domain}>"


def build_message(
    rendered: RenderedEmail,
    *,
    sender: Sender,
    to_address: str,
    to_name: str | None,
    message_id: str,
    sent_at: datetime,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender.mail_from
    user, _, domain = to_address.rpartition("@")
    message["To"] = Address(display_name=to_name or "", username=user, domain=domain)
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message
