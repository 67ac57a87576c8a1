"""The copies of sent recovery emails (domain.sent_email), kept with their EMAIL_SENT entries.

Written in the transaction that confirms the send (SqlStore.confirm_send), read by step for the
dashboard, deleted when the checkout is erased. The content is zlib-compressed JSON: an HTML email
is 10-30 KB and compresses to a fifth or less, and bytes keep any character the message held.
"""

import json
import zlib
from dataclasses import asdict
from datetime import datetime

from sqlalchemy import LargeBinary, delete, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from domain.activity import ActivityType
from domain.sent_email import SentEmail
from store.schema import UtcDateTime, activities, checkouts, sent_emails

_LEVEL = 6
"""zlib's default: on a 20 KB email about 0.1 ms, a third of what level 9 costs, for 2% more."""


def pack(copy: SentEmail) -> bytes:
    # ensure_ascii (the default): any str encodes, a lone surrogate included.
    return zlib.compress(json.dumps(asdict(copy), separators=(",", ":")).encode(), _LEVEL)


def unpack(content: bytes) -> SentEmail:
    return SentEmail(**json.loads(zlib.decompress(content)))


async def keep_copy(
    conn: AsyncConnection,
    insert_ignore: Insert,
    key: str,
    checkout_id: str,
    *,
    copy: SentEmail,
    at: datetime,
) -> None:
    """Keep `copy` unless the checkout was erased meanwhile (a send that raced the erasure).

    The row is selected from the checkout's own, locked FOR SHARE on PostgreSQL: an erasure
    committing first leaves nothing to select, and one coming second waits for this transaction
    and then deletes the copy (SQLite has a single writer already). `insert_ignore`: the
    dialect's INSERT ... ON CONFLICT DO NOTHING on sent_emails (a retried confirmation)."""
    source = (
        select(
            literal(key).label("key"),
            checkouts.c.id,
            literal(at, UtcDateTime()).label("created_date"),
            literal(pack(copy), LargeBinary()).label("content"),
        )
        .where(checkouts.c.id == checkout_id, checkouts.c.deleted_date.is_(None))
        .with_for_update(read=True)
    )
    columns = ["key", "checkout_id", "created_date", "content"]
    await conn.execute(insert_ignore.from_select(columns, source))


async def copies_by_step(
    conn: AsyncConnection, checkout_id: str, step: int | None = None
) -> dict[int, SentEmail]:
    """The checkout's kept copies by the step of their EMAIL_SENT entry (one step's with `step`)."""
    query = (
        select(activities.c.step, sent_emails.c.content)
        .join(
            activities,
            (activities.c.checkout_id == sent_emails.c.checkout_id)
            & (activities.c.key == sent_emails.c.key),
        )
        .where(
            sent_emails.c.checkout_id == checkout_id,
            activities.c.type == ActivityType.EMAIL_SENT,
        )
    )
    if step is not None:
        query = query.where(activities.c.step == step)
    rows = (await conn.execute(query)).all()
    return {int(row.step): unpack(row.content) for row in rows if row.step is not None}


async def steps_with_copies(conn: AsyncConnection, checkout_id: str) -> frozenset[int]:
    """The steps whose copy is kept, without reading the copies (for the checkout page)."""
    query = (
        select(activities.c.step)
        .join(
            sent_emails,
            (activities.c.checkout_id == sent_emails.c.checkout_id)
            & (activities.c.key == sent_emails.c.key),
        )
        .where(sent_emails.c.checkout_id == checkout_id)
    )
    return frozenset(int(s) for s in (await conn.scalars(query)).all() if s is not None)


async def erase_copies(conn: AsyncConnection, checkout_id: str) -> None:
    await conn.execute(delete(sent_emails).where(sent_emails.c.checkout_id == checkout_id))
