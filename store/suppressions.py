"""Unsubscribes: a suppression per address, and the running checkouts it concerns."""

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.checkout import CheckoutStatus
from store.email_limits import address_key
from store.schema import checkouts, suppressions


async def suppress(engine: AsyncEngine, email: str, at: datetime) -> bool:
    """Record that `email` wants no more recovery email; False when it had unsubscribed before."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    async with engine.begin() as conn:
        result = await conn.execute(
            insert(suppressions)
            .values(address_key=address_key(email), created_date=at)
            .on_conflict_do_nothing()
        )
    return result.rowcount == 1


async def abandoned_checkouts_of(engine: AsyncEngine, email: str) -> list[str]:
    """Ids of the address's checkouts whose flows may still mail it."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(checkouts.c.id).where(
                func.lower(checkouts.c.buyer_email) == email.strip().lower(),
                checkouts.c.status == CheckoutStatus.ABANDONED,
                checkouts.c.deleted_date.is_(None),
            )
        )
        return [row.id for row in rows]
