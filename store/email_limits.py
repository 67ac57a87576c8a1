"""Per-address limits on recovery email, checked inside the transaction that claims a send.

An address is known by a SHA-256 of its normalised form, so the suppression list can outlive an
erased checkout (an unsubscribe must keep being honoured) without keeping the address itself.

Both limits are per shop: an unsubscribe is from one shop's sender, and the cap counts the sends
of the same shop. A suppression without a shop (NULL) holds in every shop: a hard bounce, an
address that does not exist, which no shop should try again.

The statements are built once: a send runs them on its hot path, and building a SQLAlchemy
statement costs more than SQLite takes to run it.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BindParameter, bindparam, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema import email_sends, suppressions


def address_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


UNSUBSCRIBED = "unsubscribed"
"""The reason of an unsubscribe's suppression, and of every row from before reasons were kept."""


@dataclass(frozen=True)
class AddressState:
    suppressed_because: str | None
    """Why the address is suppressed (`unsubscribed`, `bounced`, `complained`), the first
    suppression that holds in the shop; None: it is not."""
    capped_until: datetime | None
    """When the frequency cap lets this checkout mail the address again; None: it may now."""


_ADDRESS: BindParameter[str] = bindparam("address")
_SHOP: BindParameter[str] = bindparam("shop_id")
_STATE = select(
    # The first suppression that holds keeps its reason (a later bounce of an address that
    # unsubscribed says nothing new to this shop).
    select(func.coalesce(suppressions.c.reason, UNSUBSCRIBED))
    .where(
        suppressions.c.address_key == _ADDRESS,
        or_(suppressions.c.shop_id == _SHOP, suppressions.c.shop_id.is_(None)),
    )
    .order_by(suppressions.c.seq)
    .limit(1)
    .scalar_subquery()
    .label("suppressed"),
    # Only other checkouts' emails count: a policy's own steps are spaced as the shop chose.
    select(func.max(email_sends.c.sent_at))
    .where(
        email_sends.c.shop_id == _SHOP,
        email_sends.c.address_key == _ADDRESS,
        email_sends.c.checkout_id != bindparam("checkout_id"),
        email_sends.c.sent_at > bindparam("since"),
    )
    .scalar_subquery()
    .label("latest"),
)
_RECORD = email_sends.insert()
_FORGET = delete(email_sends).where(email_sends.c.key == bindparam("send_key"))


async def lock_address(conn: AsyncConnection, key: str) -> None:
    """Serialise sends to one address across processes for the rest of the transaction.

    SQLite has one writer at a time already; PostgreSQL needs the lock, or two checkouts of one
    buyer could both find the cap free and both send.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))


async def address_state(
    conn: AsyncConnection,
    key: str,
    checkout_id: str,
    at: datetime,
    window: timedelta,
    *,
    shop_id: str,
) -> AddressState:
    """Suppression and frequency cap of an address in `shop_id`, in one statement."""
    values = {"address": key, "shop_id": shop_id, "checkout_id": checkout_id, "since": at - window}
    row = (await conn.execute(_STATE, values)).one()
    latest = row.latest if window > timedelta(0) else None
    return AddressState(
        suppressed_because=row.suppressed,
        capped_until=max(latest + window, at) if latest is not None else None,
    )


async def record_send(
    conn: AsyncConnection,
    send_key: str,
    key: str,
    checkout_id: str,
    at: datetime,
    *,
    shop_id: str,
) -> None:
    row = {
        "key": send_key,
        "address_key": key,
        "checkout_id": checkout_id,
        "sent_at": at,
        "shop_id": shop_id,
    }
    await conn.execute(_RECORD, row)


async def forget_send(conn: AsyncConnection, send_key: str) -> None:
    await conn.execute(_FORGET, {"send_key": send_key})
