"""A small pool of persistent SMTP connections, shared by every email activity of a worker.

Opening a connection (and TLS) costs more than sending a recovery email over it, so connections are
kept and reused. A connection that failed in any way is dropped rather than trusted again.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from email.message import Message

import aiosmtplib

from activities.email_message import flatten_message
from domain.smtp import SmtpConfig, SmtpSecurity
from telemetry.tracing import smtp_send_failed, smtp_send_span

logger = logging.getLogger(__name__)

# A connection idle for longer than this is probed with NOOP before use: servers drop idle
# clients, and finding that out at MAIL FROM would cost the step an activity retry.
_PROBE_AFTER_IDLE_SECONDS = 20.0


@dataclass
class _Idle:
    client: aiosmtplib.SMTP
    since: float


class SmtpPool:
    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._slots = asyncio.Semaphore(config.pool_size)
        self._idle: list[_Idle] = []

    async def send(self, message: Message, sender: str, recipient: str) -> None:
        """Send over a pooled connection; any SMTP or network error propagates to the caller.

        The envelope is given rather than read back out of the headers, which costs a parse.
        The transaction (with the wait for a free connection) is a span of its own.
        """
        async with self._slots:
            with smtp_send_span(self._config.host, self._config.port) as span:
                try:
                    await self._send_pooled(message, sender, recipient)
                except BaseException as err:
                    smtp_send_failed(span, err, _reply_code(err))
                    raise

    async def _send_pooled(self, message: Message, sender: str, recipient: str) -> None:
        client = await self._acquire()
        try:
            await _send_one(client, message, sender, recipient)
        except BaseException:
            client.close()
            raise
        self._idle.append(_Idle(client, time.monotonic()))

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for entry in idle:
            try:
                await entry.client.quit()
            except aiosmtplib.SMTPException:
                entry.client.close()

    async def _acquire(self) -> aiosmtplib.SMTP:
        while self._idle:
            entry = self._idle.pop()
            if not entry.client.is_connected:
                continue
            if time.monotonic() - entry.since < _PROBE_AFTER_IDLE_SECONDS:
                return entry.client
            try:
                await entry.client.noop()
                return entry.client
            except aiosmtplib.SMTPException:
                entry.client.close()
        return await self._connect()

    async def probe(self) -> None:
        """Open a fresh connection as a send would (EHLO, TLS and login as configured), then
        NOOP and QUIT: the health check's proof that the relay takes us. Raises on failure."""
        client = await self._connect()
        try:
            await client.noop()
            await client.quit()
        finally:
            client.close()

    async def _connect(self) -> aiosmtplib.SMTP:
        cfg = self._config
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            username=cfg.username,
            password=cfg.password,
            timeout=cfg.timeout_seconds,
            use_tls=cfg.security is SmtpSecurity.TLS,
            start_tls=cfg.security is SmtpSecurity.STARTTLS,
        )
        await client.connect()
        logger.debug("Opened SMTP connection to %s:%s", cfg.host, cfg.port)
        return client


def _reply_code(err: BaseException) -> int | None:
    """The relay's reply code in an SMTP error (the lowest, for refused recipients)."""
    if isinstance(err, aiosmtplib.SMTPRecipientsRefused):
        return min((refused.code for refused in err.recipients), default=None)
    if isinstance(err, aiosmtplib.SMTPResponseException):
        return err.code
    return None


async def _send_one(client: aiosmtplib.SMTP, message: Message, sender: str, recipient: str) -> None:
    """What `client.send_message` does, with the message flattened by our quicker generator.

    The same SMTP conversation and bytes: BODY=8BITMIME when the server offers it (8bit, else
    7bit, for the generator). The first message of a connection (greeting still to do) and any
    non-ASCII address (SMTPUTF8) go through aiosmtplib's own path. A recovery email never has a
    Bcc, which send_message would strip.
    """
    if client.is_ehlo_or_helo_needed or not (sender.isascii() and recipient.isascii()):
        await client.send_message(message, sender=sender, recipients=[recipient])
        return
    mail_options: list[str] = []
    if client.supports_extension("8BITMIME"):
        mail_options.append("BODY=8BITMIME")
        cte_type = "8bit"
    else:
        cte_type = "7bit"
    await client.sendmail(
        sender, [recipient], flatten_message(message, cte_type=cte_type), mail_options=mail_options
    )
