"""What the dashboard needs beyond the store and the key check, given by whoever builds the app."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from domain.sent_email import SentEmail


class ReceivedMessage(Protocol):
    @property
    def message(self) -> EmailMessage: ...


MailReader = Callable[[], Sequence[ReceivedMessage]]
"""Every message the embedded SMTP server kept, oldest first."""


class PreviewStep(Protocol):
    @property
    def number(self) -> int: ...

    @property
    def template(self) -> str: ...

    @property
    def languages(self) -> Sequence[str]:
        """The template's complete languages."""
        ...


class EmailPreviews(Protocol):
    """Any email step's email before it goes out, and a test of it (activities.email_preview)."""

    async def steps(self, *, shop_id: str) -> Sequence[PreviewStep]:
        """The email steps of the policy the shop's new checkouts get."""
        ...

    async def preview(
        self, step: int, language: str, checkout_id: str | None, *, shop_id: str
    ) -> SentEmail:
        """Raises InvalidInputError for a step, language or checkout that is not there."""
        ...

    async def send_test(
        self, step: int, language: str, checkout_id: str | None, to: str, *, shop_id: str
    ) -> SentEmail:
        """The test as sent to `to`; raises InvalidInputError when refused, ConnectionError
        when the relay did not take it. Recorded nowhere."""
        ...


@dataclass(frozen=True)
class DashboardConfig:
    session_secret: str
    """Keys the session cookies; kept across restarts so that operators stay logged in."""
    workflow_link: str
    """Where the Temporal UI shows one flow: a format string with `{workflow_id}`."""
    mailbox: MailReader | None = None
    """The dev stack's received mail; None (outside dev) hides the mailbox page."""
    previews: EmailPreviews | None = None
    """Step previews and test sends; None hides the preview page."""
    session_hours: int = 12
