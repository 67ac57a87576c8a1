"""A small pool of persistent SMTP connections, shared by every email activity of a worker.

Opening a connection (and TLS) costs more than sending a recovery email over it, so connections are
kept and reused. A connection that failed in any way is dropped rather than trusted again.
"""

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import Message

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings

from activities.dkim import DkimSigner
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


Commit = Callable[[], Awaitable[bool]]
"""Awaited once the relay holds the whole message but before its final dot: True sends it, False
abandons it (the connection is dropped, and a relay discards a message whose end never came)."""

_LEADING_DOT = re.compile(rb"(?m)^\.")


class DeliveryInDoubtError(Exception):
    """The message's end went to the relay, then the connection failed before its answer: the
    relay may have accepted it, so sending it again could deliver it twice."""


class SmtpPool:
    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._slots = asyncio.Semaphore(config.pool_size)
        self._idle: list[_Idle] = []

    async def send(
        self,
        message: Message,
        sender: str,
        recipient: str,
        *,
        commit: Commit | None = None,
        dkim: DkimSigner | None = None,
    ) -> bool:
        """Send over a pooled connection; any SMTP or network error propagates to the caller.

        With `commit`, the relay first gets the whole message but its final dot, the moment it
        accepts the message; `commit` decides then (the email step claims the send there, so a
        worker that dies holding a claim has almost certainly delivered). Returns False when
        `commit` abandoned the message; raises `DeliveryInDoubtError` when the answer to the
        final dot never came. With `dkim`, the bytes sent are signed (activities.dkim).

        The envelope is given rather than read back out of the headers, which costs a parse.
        The transaction (with the wait for a free connection) is a span of its own.
        """
        async with self._slots:
            with smtp_send_span(self._config.host, self._config.port) as span:
                try:
                    return await self._send_pooled(message, sender, recipient, commit, dkim)
                except BaseException as err:
                    smtp_send_failed(span, err, _reply_code(err))
                    raise

    async def _send_pooled(
        self,
        message: Message,
        sender: str,
        recipient: str,
        commit: Commit | None,
        dkim: DkimSigner | None,
    ) -> bool:
        client = await self._acquire()
        try:
            sent = await _send_one(client, message, sender, recipient, commit, dkim=dkim)
        except BaseException:
            client.close()
            raise
        if not sent:
            # Mid-DATA there is no way back but hanging up.
            client.close()
            return False
        self._idle.append(_Idle(client, time.monotonic()))
        return True

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


def _wire_bytes(message: Message, cte_type: str, dkim: DkimSigner | None) -> bytes:
    """The message as the relay receives it (before dot-stuffing, which the relay undoes),
    signed when `dkim` is given: over exactly these bytes, as the connection's 8BITMIME decides
    the flattening."""
    data = normalize_message_line_endings(flatten_message(message, cte_type=cte_type))
    return data if dkim is None else dkim.sign(data)


async def _send_one(
    client: aiosmtplib.SMTP,
    message: Message,
    sender: str,
    recipient: str,
    commit: Commit | None,
    *,
    dkim: DkimSigner | None = None,
) -> bool:
    """One mail transaction, the bytes `client.send_message` would send, with `commit` awaited
    between the message's last line and the final dot (see `SmtpPool.send`).

    BODY=8BITMIME when the server offers it (8bit, else 7bit, for the generator), SMTPUTF8 for a
    non-ASCII address, SIZE when offered. A recovery email never has a Bcc, which send_message
    would strip.
    """
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
    mail_options: list[str] = []
    ascii_only = sender.isascii() and recipient.isascii()
    if not ascii_only:
        if not client.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
        mail_options.append("SMTPUTF8")
    if client.supports_extension("8BITMIME"):
        mail_options.append("BODY=8BITMIME")
        cte_type = "8bit"
    else:
        cte_type = "7bit"
    data = _wire_bytes(message, cte_type, dkim)
    if client.supports_extension("size"):
        mail_options.insert(0, f"SIZE={len(data)}")
    encoding = "ascii" if ascii_only else "utf-8"
    await client.mail(sender, options=mail_options, encoding=encoding)
    try:
        await client.rcpt(recipient, encoding=encoding)
    except aiosmtplib.SMTPRecipientRefused as refused:
        # The shape sendmail raises (and the email step maps to invalid_address).
        raise aiosmtplib.SMTPRecipientsRefused([refused]) from refused
    started = await client.execute_command(b"DATA")
    if started.code != aiosmtplib.SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(started.code, started.message)
    protocol = client.protocol
    assert protocol is not None  # execute_command raised if it were gone
    protocol.write(_LEADING_DOT.sub(b"..", data))
    if commit is not None and not await commit():
        return False
    # Past this write the relay may accept the message: a failure before its answer leaves the
    # delivery in doubt, which the caller must not take for a refusal.
    protocol.write(b".\r\n")
    try:
        answer = await protocol.read_response(timeout=client.timeout)
    except (OSError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as err:
        raise DeliveryInDoubtError(f"no answer to the end of the message: {err}") from err
    if answer.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(answer.code, answer.message)
    return True
