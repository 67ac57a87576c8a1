"""`build_message` makes what the compat32 MIME classes make (MIMEMultipart, MIMEText): the same
headers in the same order, the same payloads, and so the same bytes on the wire."""

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest
from aiosmtplib.email import flatten_message as aiosmtplib_flatten
from hypothesis import example, given, settings
from hypothesis import strategies as st

from activities.email_message import Sender, build_message, flatten_message, message_id_for
from activities.rendering import RenderedEmail

SENDER = Sender("Test Shop <recovery@shop.test>")
SENT_AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

_body = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(" \t\r\n.=<>&\"'é€ü漢\u2028\x00\x85")),
        st.characters(codec="utf-8"),  # no lone surrogates: not encodable
    ),
    max_size=400,
)


def _built(text: str, html: str) -> Message:
    return build_message(
        RenderedEmail(subject="Your cart", html=html, text=text),
        sender=SENDER,
        to_address="buyer@example.com",
        to_name="Ada",
        message_id=message_id_for("key", SENDER.domain),
        sent_at=SENT_AT,
    )


def _with_mime_classes(built: Message, text: str, html: str) -> Message:
    """The same message built the way build_message once did, with the MIME classes."""
    root = built.get_payload()
    assert isinstance(root, list)
    reference = MIMEMultipart("alternative", boundary=built.get_boundary())
    for name, value in built.items():
        if name not in ("Content-Type", "MIME-Version"):
            reference[name] = value
    reference.attach(MIMEText(text, "plain", "utf-8"))
    reference.attach(MIMEText(html, "html", "utf-8"))
    return reference


def _shape(message: Message) -> list[tuple[list[tuple[str, str]], object]]:
    return [
        (list(part.items()), None if part.is_multipart() else part.get_payload())
        for part in message.walk()
    ]


@settings(max_examples=200, deadline=None)
@given(text=_body, html=_body)
@example(text="", html="")
@example(text="Hi Ada,\n\nLinen shirt x 2: €30.00\n" * 20, html="<p>é</p>" * 100)
def test_parts_are_what_mimetext_makes(text: str, html: str) -> None:
    built = _built(text, html)
    reference = _with_mime_classes(built, text, html)
    assert _shape(built) == _shape(reference)
    for cte_type in ("8bit", "7bit"):
        expected = aiosmtplib_flatten(reference, cte_type=cte_type)
        assert flatten_message(built, cte_type=cte_type) == expected
        assert aiosmtplib_flatten(built, cte_type=cte_type) == expected


def test_a_lone_surrogate_fails_as_mimetext_does() -> None:
    with pytest.raises(UnicodeEncodeError):
        MIMEText("\ud800", "plain", "utf-8")
    with pytest.raises(UnicodeEncodeError):
        _built("\ud800", "<p>x</p>")


@pytest.mark.parametrize(
    ("mail_from", "name", "address"),
    [
        ("Our Shöp <r@shop.example>", "Our Shöp", "r@shop.example"),
        ('"Shop, Inc." <r@shop.example>', "Shop, Inc.", "r@shop.example"),
        ("r@shop.example", "", "r@shop.example"),
    ],
)
def test_the_from_header_keeps_its_address_whatever_the_name(
    mail_from: str, name: str, address: str
) -> None:
    sender = Sender(mail_from)
    built = build_message(
        RenderedEmail(subject="Your cart", html="<p>hi</p>", text="hi"),
        sender=sender,
        to_address="buyer@example.com",
        to_name="Ada",
        message_id=message_id_for("key", sender.domain),
        sent_at=SENT_AT,
    )
    # Read back as a mail client reads it.
    received = message_from_bytes(flatten_message(built), policy=policy.default)
    [parsed] = received["From"].addresses
    assert isinstance(parsed, Address)
    assert (parsed.display_name, parsed.addr_spec) == (name, address)
