"""The pool sends recovery emails byte for byte as aiosmtplib's own `send_message` would: the
quicker flattening (short plain headers written directly) changes no header, fold or body, and
the SMTP conversation keeps its options."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtplib.email import flatten_message as aiosmtplib_flatten
from hypothesis import example, given, settings
from hypothesis import strategies as st

from activities.email_message import (
    Sender,
    Unsubscribe,
    build_message,
    flatten_message,
    message_id_for,
)
from activities.rendering import RenderedEmail
from activities.smtp_pool import SmtpPool
from domain.smtp import SmtpConfig
from tests.ports import free_port

SENDER = Sender("Test Shop <recovery@shop.test>")
SENT_AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

# Buyer data as it comes: any text, with the characters that make headers fold or encode.
_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(' \t\r\n,;:=?"<>()@é€ü漢\u2028\x00\x85')),
        st.characters(codec="utf-8"),  # no lone surrogates: not encodable
    ),
    max_size=120,
)


def _message(name: str, subject: str, token: str, body: str, *, unsubscribe: bool) -> Any:
    rendered = RenderedEmail(subject=subject, html=f"<p>{body}</p>", text=body)
    links = Unsubscribe(
        url=f"https://recovery.shop.test/u/{token}",
        mailto=f"mailto:unsubscribe@shop.test?subject=unsubscribe%20{token}",
    )
    return build_message(
        rendered,
        sender=SENDER,
        to_address="buyer@example.com",
        to_name=name or None,
        message_id=message_id_for(f"key-{token}", SENDER.domain),
        sent_at=SENT_AT,
        unsubscribe=links if unsubscribe else None,
    )


@settings(max_examples=300, deadline=None)
@given(
    name=_text,
    subject=_text,
    token=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=90),
    body=_text,
    unsubscribe=st.booleans(),
    cte_type=st.sampled_from(["8bit", "7bit"]),
)
@example(
    name="Ada Lovelace",
    subject="Your cart",
    token="t",
    body="hi",
    unsubscribe=True,
    cte_type="8bit",
)
@example(name="", subject="x" * 70, token="y" * 60, body="", unsubscribe=True, cte_type="8bit")
@example(
    name="Zoë  Ünal",
    subject="Dernière chance : votre panier",
    token="z",
    body="é",
    unsubscribe=False,
    cte_type="7bit",
)
def test_flattened_bytes_are_aiosmtplibs(
    name: str, subject: str, token: str, body: str, unsubscribe: bool, cte_type: str
) -> None:
    message = _message(name, subject, token, body, unsubscribe=unsubscribe)
    assert flatten_message(message, cte_type=cte_type) == aiosmtplib_flatten(
        message, cte_type=cte_type
    )


@pytest.mark.parametrize("length", range(60, 90))
def test_headers_at_the_fold_limit_fold_as_compat32_does(length: int) -> None:
    # Around 78 characters a line, where compat32 starts to fold.
    subject = ("word " * 20)[:length].strip()
    message = _message("Ada", subject, "a" * (length - 40), "hi", unsubscribe=True)
    assert flatten_message(message) == aiosmtplib_flatten(message)


class _RawRecorder:
    def __init__(self) -> None:
        self.received: list[tuple[bytes, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.original_content, list(envelope.mail_options)))
        return "250 OK"


async def test_the_pool_sends_what_send_message_sends() -> None:
    recorder = _RawRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    pool = SmtpPool(SmtpConfig(host="127.0.0.1", port=port, pool_size=1))
    messages = [
        _message(f"Bûyer {n}", f"Your cart {n}", f"tok{n}", f"body {n}", unsubscribe=True)
        for n in range(3)
    ]
    try:
        # One connection: the first send greets the server, the others reuse it.
        for message in messages:
            await pool.send(message, SENDER.address, "buyer@example.com")
        await pool.close()
    finally:
        await asyncio.to_thread(controller.stop)
    assert len(recorder.received) == 3
    for message, (raw, options) in zip(messages, recorder.received, strict=True):
        # The relay sees the same options (aiosmtpd offers 8BITMIME; sendmail adds SIZE) and
        # the same bytes, whether aiosmtplib flattened them (the first) or we did.
        assert options == [f"SIZE={len(raw)}", "BODY=8BITMIME"]
        assert raw == aiosmtplib_flatten(message).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
