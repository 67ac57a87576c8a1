"""The copy of each sent email, on both databases: written with its EMAIL_SENT entry, read back
by step as the buyer received it, compressed, erased with the checkout, and never lost to a
character PostgreSQL's text refuses."""

import asyncio
import json
import zlib
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update

from activities.email_message import Sender, build_message, flatten_message
from activities.rendering import RenderedEmail
from activities.sent_copy import sent_copy
from domain.activity import ActivityEntry, ActivityType
from domain.flow import step_key, workflow_id_for
from domain.sent_email import SentEmail, read_email
from store.schema import checkouts, sent_emails
from store.sql import SqlStore
from tests.support import sample_checkout
from workers.resources import open_store
from workers.settings import Settings

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
HTML = (
    "<html><body>" + "<p>Ihr Warenkorb wartet, Ada \u2013 noch 2 Artikel.</p>\n" * 300 + "</body>"
)
TEXT = "Hallo Ada,\nIhr Warenkorb wartet \u2013 noch 2 Artikel.\n"


def _message(html: str = HTML, text: str = TEXT, subject: str = "Ihr Warenkorb wartet \u2013 Ada"):
    return build_message(
        RenderedEmail(subject, html, text),
        sender=Sender("Our Shop <recovery@shop.example>"),
        to_address="ada@example.com",
        to_name="Ada Lövelace",
        message_id="<abc.recovery@shop.example>",
        sent_at=NOW,
    )


async def _reported(store: SqlStore, checkout_id: str) -> None:
    checkout = sample_checkout().model_copy(update={"id": checkout_id, "created_date": NOW})
    await store.save_reported(checkout, NOW)


async def _send(store: SqlStore, checkout_id: str, step: int, copy: SentEmail | None) -> str:
    key = step_key(workflow_id_for(checkout_id), step - 1)
    at = NOW + timedelta(hours=step)
    start = await store.begin_send(checkout_id, key, "<m@x>", at)
    assert start.claim is not None
    entry = ActivityEntry(type=ActivityType.EMAIL_SENT, created_date=at, step=step)
    await store.confirm_send(key, checkout_id, entry, copy=copy)
    return key


async def _rows(store: SqlStore) -> list[tuple[str, str, bytes]]:
    async with store.engine.connect() as conn:
        found = await conn.execute(
            select(sent_emails.c.key, sent_emails.c.checkout_id, sent_emails.c.content)
        )
        return [(row.key, row.checkout_id, row.content) for row in found]


async def test_the_copy_is_kept_with_its_entry_and_read_back_as_sent(store: SqlStore):
    await _reported(store, "c-1")
    copy = sent_copy(_message())
    key = await _send(store, "c-1", 1, copy)
    await _send(store, "c-1", 2, None)  # a send without a copy

    assert await store.sent_emails("c-1") == {1: copy}
    assert await store.sent_emails("c-1", step=1) == {1: copy}
    assert await store.sent_emails("c-1", step=2) == {}
    assert await store.steps_with_sent_emails("c-1") == frozenset({1})
    kept = (await store.sent_emails("c-1"))[1]
    assert kept.subject == "Ihr Warenkorb wartet \u2013 Ada"  # decoded from its encoded word
    assert kept.to == "Ada Lövelace <ada@example.com>"
    assert (kept.sender, kept.message_id) == (
        "Our Shop <recovery@shop.example>",
        "<abc.recovery@shop.example>",
    )
    assert kept.date == "Sun, 22 Nov 2026 10:00:00 +0000"
    assert (kept.html, kept.text) == (HTML, TEXT)

    # Compressed: the 15 KB email takes a small fraction of that, as zlib data.
    ((row_key, row_checkout, content),) = await _rows(store)
    assert (row_key, row_checkout) == (key, "c-1")
    assert len(content) < len(HTML) / 10
    assert json.loads(zlib.decompress(content))["html"] == HTML


async def test_a_repeated_confirmation_keeps_one_copy(store: SqlStore):
    await _reported(store, "c-1")
    copy = sent_copy(_message())
    key = await _send(store, "c-1", 1, copy)
    entry = ActivityEntry(type=ActivityType.EMAIL_SENT, created_date=NOW, step=1)
    await store.confirm_send(key, "c-1", entry, copy=sent_copy(_message(html="<p>other</p>")))
    assert await store.sent_emails("c-1") == {1: copy}
    assert len(await _rows(store)) == 1


async def test_copies_are_erased_with_the_checkout(store: SqlStore):
    await _reported(store, "c-1")
    await _reported(store, "c-2")
    await _send(store, "c-1", 1, sent_copy(_message()))
    await _send(store, "c-1", 2, sent_copy(_message(html="<p>second</p>")))
    await _send(store, "c-2", 1, sent_copy(_message()))

    assert await store.erase("c-1", NOW + timedelta(days=1))
    assert await store.sent_emails("c-1") == {}
    assert await store.steps_with_sent_emails("c-1") == frozenset()
    assert [row[1] for row in await _rows(store)] == ["c-2"]  # the other checkout's stays


async def test_a_send_confirmed_after_the_erasure_keeps_no_copy(store: SqlStore):
    await _reported(store, "c-1")
    key = step_key(workflow_id_for("c-1"), 0)
    assert (await store.begin_send("c-1", key, "<m@x>", NOW)).claim is not None
    # The erasure lands while the relay holds the email: the confirmation still records the
    # send, and keeps nothing of the buyer's.
    assert await store.erase("c-1", NOW)
    entry = ActivityEntry(type=ActivityType.EMAIL_SENT, created_date=NOW, step=1)
    await store.confirm_send(key, "c-1", entry, copy=sent_copy(_message()))
    assert await _rows(store) == []
    async with store.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(sent_emails)) == 0


async def test_a_store_told_to_keep_no_copies_keeps_none(database_url: str):
    store = SqlStore.from_url(database_url, keep_sent_emails=False)
    await store.create_schema()
    try:
        await _reported(store, "c-1")
        await _send(store, "c-1", 1, sent_copy(_message()))
        assert await store.sent_emails("c-1") == {}
        assert await _rows(store) == []
        checkout = await store.get("c-1")
        assert checkout is not None
        assert [a.type for a in checkout.activities][-1] is ActivityType.EMAIL_SENT
    finally:
        await store.close()


async def test_a_nul_the_template_rendered_is_kept_not_lost(store: SqlStore):
    """PostgreSQL's text refuses NUL: the bodies keep it (they are bytes), and the subject never
    had one when it reached the buyer (the message builder makes headers one clean line)."""
    await _reported(store, "c-1")
    message = _message(html="<p>a\x00b</p>", text="a\x00b", subject="Cart\x00waiting")
    await _send(store, "c-1", 1, sent_copy(message))
    kept = (await store.sent_emails("c-1"))[1]
    assert (kept.html, kept.text) == ("<p>a\x00b</p>", "a\x00b")
    received = read_email(message_from_bytes(flatten_message(message), policy=policy.default))
    assert kept.subject == received.subject == "Cart waiting"


def test_the_copy_reads_the_message_as_the_mailbox_does():
    """One rule: the copy of the message as built equals what the buyer's client parses."""
    message = _message()
    received = message_from_bytes(flatten_message(message), policy=policy.default)
    assert sent_copy(message) == read_email(received)


def test_an_attachment_is_no_part_of_the_copy():
    """Even one that comes before the body, as some mailers put them."""
    body = EmailMessage()
    body.set_content("the text")
    body.add_alternative("<p>the html</p>", subtype="html")
    attached = EmailMessage()
    attached.set_content(b"<p>attached</p>", "text", "html", disposition="attachment")
    message = EmailMessage()
    message["Subject"] = "Your cart"
    message["Content-Type"] = "multipart/mixed"
    message.attach(attached)
    message.attach(body)
    copy = read_email(message)
    assert (copy.subject, copy.text, copy.html) == ("Your cart", "the text\n", "<p>the html</p>\n")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_confirmation_racing_an_erasure_keeps_nothing(store: SqlStore):
    """PostgreSQL runs both at once: the confirmation waits for the erasure holding the
    checkout's row, then finds it erased (without the row lock it would insert the copy after
    the erasure deleted the copies, and the buyer's email would outlive the erasure)."""
    await _reported(store, "c-1")
    key = step_key(workflow_id_for("c-1"), 0)
    assert (await store.begin_send("c-1", key, "<m@x>", NOW)).claim is not None
    entry = ActivityEntry(type=ActivityType.EMAIL_SENT, created_date=NOW, step=1)
    async with store.engine.connect() as erasing:
        transaction = await erasing.begin()
        await erasing.execute(
            update(checkouts).where(checkouts.c.id == "c-1").values(deleted_date=NOW)
        )
        confirming = asyncio.create_task(
            store.confirm_send(key, "c-1", entry, copy=sent_copy(_message()))
        )
        await asyncio.sleep(0.5)
        assert not confirming.done()  # waiting for the erasure's row lock
        await erasing.execute(delete(sent_emails).where(sent_emails.c.checkout_id == "c-1"))
        await transaction.commit()
    await confirming
    assert await _rows(store) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_setting_turns_copies_off(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("CHECKOUT_RECOVERY_DATABASE_URL", database_url)
    monkeypatch.setenv("CHECKOUT_RECOVERY_KEEP_SENT_EMAILS", "false")
    async with open_store(Settings(data_dir=tmp_path)) as store:
        await _reported(store, "c-1")
        await _send(store, "c-1", 1, sent_copy(_message()))
        assert await _rows(store) == []
    monkeypatch.delenv("CHECKOUT_RECOVERY_KEEP_SENT_EMAILS")  # the default: kept
    async with open_store(Settings(data_dir=tmp_path)) as store:
        await _send(store, "c-1", 2, sent_copy(_message()))
        assert list(await store.sent_emails("c-1")) == [2]
