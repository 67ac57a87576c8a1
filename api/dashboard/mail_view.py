"""A received email as the buyer sees it: headers, the HTML part and the plain-text part."""

from dataclasses import dataclass
from email.message import EmailMessage


@dataclass(frozen=True)
class MailView:
    subject: str
    sender: str
    to: str
    date: str
    html: str | None
    """Shown in a sandboxed iframe: no script runs and it cannot reach the dashboard's origin."""
    text: str | None


def mail_view(message: EmailMessage) -> MailView:
    return MailView(
        subject=str(message.get("Subject", "")),
        sender=str(message.get("From", "")),
        to=str(message.get("To", "")),
        date=str(message.get("Date", "")),
        html=_body(message, "html"),
        text=_body(message, "plain"),
    )


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None
