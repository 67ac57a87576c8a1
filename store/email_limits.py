"""Per-address limits on recovery email, checked inside the transaction that claims a send.

An address is known by a SHA-256 of its normalised form, so the suppression list can outlive an
erased checkout (an unsubscribe must keep being honoured) without keeping the address itself.
"""

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema import email_sends, suppressions


def address_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


async def lock_address(conn: AsyncConnection, key: str) -> None:
    """Serialise sends to one address across processes for the rest of the transaction.

    SQLite has one writer at a time already; PostgreSQL needs the lock, or two checkouts of one
    buyer could both find the cap free and both send.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))


async def is_suppressed(conn: AsyncConnection, key: str) -> bool:
    found = await conn.scalar(
        select(suppressions.c.address_key).where(suppressions.c.address_key == key)
    )
    return found is not None


async def capped_until(
    conn: AsyncConnection, key: str, checkout_id: str, at: datetime, window: timedelta
) -> datetime | None:
    """When the cap lets this checkout mail the address again; None when it may send now.

    Only other checkouts' emails count: a policy's own steps are spaced as the shop chose.
    """
    if window <= timedelta(0):
        return None
    latest = await conn.scalar(
        select(func.max(email_sends.c.sent_at)).where(
            email_sends.c.address_key == key,
            email_sends.c.checkout_id != checkout_id,
            email_sends.c.sent_at > at - window,
        )
    )
    if latest is None:
        return None
    assert isinstance(latest, datetime)  # MAX() keeps the column's type, UTC-aware
    return max(latest + window, at)


async def record_send(
    conn: AsyncConnection, send_key: str, key: str, checkout_id: str, at: datetime
) -> None:
    await conn.execute(
        email_sends.insert().values(
            key=send_key, address_key=key, checkout_id=checkout_id, sent_at=at
        )
    )


async def forget_send(conn: AsyncConnection, send_key: str) -> None:
    await conn.execute(delete(email_sends).where(email_sends.c.key == send_key))
