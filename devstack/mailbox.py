"""The embedded SMTP server of the dev stack: everything it receives lands in a Maildir folder.

Nothing is relayed anywhere; the Maildir can be opened with any mail client or read with
`checkout-recovery mail`.
"""

import logging
import mailbox
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

logger = logging.getLogger(__name__)


class MaildirHandler:
    """aiosmtpd handler: store each accepted message as one Maildir file."""

    def __init__(self, folder: Path) -> None:
        self._maildir = mailbox.Maildir(folder, create=True)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        # Kept as received, byte for byte: no parsing on the way in.
        self._maildir.add(envelope.original_content or envelope.content)
        logger.info("Received mail for %d recipient(s)", len(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


class EmbeddedSmtpServer:
    def __init__(self, host: str, port: int, folder: Path) -> None:
        self.folder = folder
        self._controller = Controller(MaildirHandler(folder), hostname=host, port=port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@dataclass(frozen=True)
class ReceivedMail:
    key: str
    message: EmailMessage


def read_mailbox(folder: Path) -> list[ReceivedMail]:
    """Every message in a Maildir folder, oldest first."""
    if not folder.is_dir():
        return []
    box = mailbox.Maildir(folder, create=False)
    found = []
    for key, stored in box.iteritems():
        parsed = message_from_bytes(stored.as_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(ReceivedMail(key, parsed))
    return sorted(found, key=lambda mail: mail.key)
