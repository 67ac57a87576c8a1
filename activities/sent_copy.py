"""The copy of a recovery email that the store keeps with its EMAIL_SENT entry.

Read back out of the message the step handed to the relay, not from the rendered template: the
copy holds what the buyer received (the subject as encoded, the bodies as their transfer encoding
decodes, the Message-ID, From, To and Date as sent), by the rule the dev mailbox uses too.
"""

from email.message import Message

from domain.sent_email import SentEmail, read_email


def sent_copy(message: Message) -> SentEmail:
    """What to pass as `copy` to `SqlStore.confirm_send` once the relay took `message`."""
    return read_email(message)
