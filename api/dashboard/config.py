"""What the dashboard needs beyond the store and the key check, given by whoever builds the app."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol


class ReceivedMessage(Protocol):
    @property
    def message(self) -> EmailMessage: ...


MailReader = Callable[[], Sequence[ReceivedMessage]]
"""Every message the embedded SMTP server kept, oldest first."""


@dataclass(frozen=True)
class DashboardConfig:
    session_secret: str
    """Keys the session cookies; kept across restarts so that operators stay logged in."""
    workflow_link: str
    """Where the Temporal UI shows one flow: a format string with `{workflow_id}`."""
    mailbox: MailReader | None = None
    """The dev stack's received mail; None (outside dev) hides the mailbox page."""
    session_hours: int = 12
