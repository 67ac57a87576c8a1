"""A relay on loopback that speaks SMTP line by line, for tests that stop a send at one exact
point of the conversation. aiosmtpd (tests/support.py) hands its handler only whole messages; the
question here is what happens when a worker dies between the message's last line and its end.

A message counts as accepted the moment its final dot arrives, before any reply, as in a relay
that queues first and answers second: a reply that never reaches the sender does not undo it.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from tests.ports import free_port


@dataclass
class Transaction:
    recipient: str = ""
    body: bytearray = field(default_factory=bytearray)
    """The message as received so far, dot-stuffing undone."""
    ended: bool = False


Hook = Callable[[Transaction], Awaitable[bytes | None]]
"""Awaited at a point of a transaction; returns the reply line to send, or None to hang up."""


async def _reply_ok(_: Transaction) -> bytes | None:
    return b"250 2.0.0 queued"


async def _reply_go_ahead(_: Transaction) -> bytes | None:
    return b"354 end with <CRLF>.<CRLF>"


@dataclass
class WireRelay:
    port: int = field(default_factory=free_port)
    on_data: Hook = _reply_go_ahead
    """On DATA, before the 354: may stall, or hang up."""
    on_end: Hook = _reply_ok
    """On the final dot (the message is already accepted), before the reply."""
    accepted: list[Transaction] = field(default_factory=list)
    receiving: list[Transaction] = field(default_factory=list)
    """Transactions in DATA whose end has not come."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        current = Transaction()
        in_data = False

        async def reply(line: bytes | None) -> bool:
            if line is None:
                writer.close()
                return False
            writer.write(line + b"\r\n")
            await writer.drain()
            return True

        with contextlib.suppress(ConnectionError):
            await reply(b"220 wire.test ESMTP")
            while line := await reader.readline():
                if in_data:
                    if line != b".\r\n":
                        current.body += line[1:] if line.startswith(b".") else line
                        continue
                    in_data = False
                    current.ended = True
                    self.receiving.remove(current)
                    self.accepted.append(current)
                    ended, current = current, Transaction()
                    if not await reply(await self.on_end(ended)):
                        return
                    continue
                verb = line[:4].upper()
                if verb == b"EHLO":
                    await reply(b"250-wire.test\r\n250 8BITMIME")
                elif verb == b"MAIL":
                    current = Transaction()
                    await reply(b"250 2.1.0 ok")
                elif verb == b"RCPT":
                    current.recipient = line.split(b":", 1)[1].strip().strip(b"<>").decode()
                    await reply(b"250 2.1.5 ok")
                elif verb == b"DATA":
                    if not await reply(await self.on_data(current)):
                        return
                    in_data = True
                    self.receiving.append(current)
                elif verb == b"QUIT":
                    await reply(b"221 2.0.0 bye")
                    return
                else:  # NOOP, RSET, HELO
                    await reply(b"250 2.0.0 ok")
        # The connection went without the message's end: a relay discards such a message.
        if in_data:
            self.receiving.remove(current)

    def to(self, recipient: str) -> list[Transaction]:
        return [t for t in self.accepted if t.recipient == recipient]


@contextlib.asynccontextmanager
async def wire_relay() -> AsyncIterator[WireRelay]:
    relay = WireRelay()
    server = await asyncio.start_server(relay._serve, "127.0.0.1", relay.port)
    try:
        yield relay
    finally:
        server.close()
