"""The default coupon provider: codes made here and kept in the store's `coupons` table.

Its codes only mean something to a shop that checks them (through `redeem`/`is_redeemed`, or the
recovery call naming the code); a shop with its own discount system plugs in a provider that calls
it instead (see domain.coupons.CouponProvider and the coupon_provider setting).

A code belongs to its checkout's shop: looked up or redeemed over the API, another shop's code is
not found (`shop_id`).
"""

import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.coupons import IssuedCoupon
from domain.flow import step_key, workflow_id_for
from domain.policy import Coupon
from store.schema import checkouts, coupons

# No 0/O or 1/I: codes are read off a screen and typed in by people.
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_code(prefix: str) -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"{prefix}-{body[:5]}-{body[5:]}" if prefix else f"{body[:5]}-{body[5:]}"


@dataclass(frozen=True)
class StoredCoupon:
    code: str
    checkout_id: str
    percent_off: int | None
    amount_off: str | None
    currency: str | None
    created_date: datetime
    expires_date: datetime
    redeemed_date: datetime | None


class Redemption(StrEnum):
    REDEEMED = "redeemed"
    UNKNOWN = "unknown"
    ALREADY_REDEEMED = "already_redeemed"
    EXPIRED = "expired"


def _usable_at(at: datetime) -> tuple[ColumnElement[bool], ...]:
    """A code can be redeemed at `at`: not used yet, not expired (there is no other way for a
    code to stop being good)."""
    return (coupons.c.redeemed_date.is_(None), coupons.c.expires_date > at)


def _in_shop(shop_id: str | None) -> tuple[ColumnElement[bool], ...]:
    return () if shop_id is None else (coupons.c.shop_id == shop_id,)


class StoreCouponProvider:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def issue(
        self, key: str, checkout_id: str, spec: Coupon, currency: str, now: datetime
    ) -> IssuedCoupon:
        insert = (
            postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        )(coupons)
        async with self._engine.begin() as conn:
            # A retried step finds its key taken and reads the code made the first time.
            await conn.execute(
                insert.values(
                    code=new_code(spec.prefix),
                    key=key,
                    checkout_id=checkout_id,
                    shop_id=select(checkouts.c.shop_id)
                    .where(checkouts.c.id == checkout_id)
                    .scalar_subquery(),
                    percent_off=spec.percent_off,
                    amount_off=spec.amount_off,
                    currency=currency,
                    created_date=now,
                    expires_date=now + spec.valid_for,
                ).on_conflict_do_nothing(index_elements=[coupons.c.key])
            )
            row = (await conn.execute(select(coupons).where(coupons.c.key == key))).one()
        return IssuedCoupon(
            code=row.code,
            expires=row.expires_date,
            percent_off=row.percent_off,
            amount_off=row.amount_off,
            currency=row.currency,
        )

    async def redeem(self, code: str, at: datetime) -> bool:
        return await self.redeem_explained(code, at, shop_id=None) is Redemption.REDEEMED

    async def redeem_explained(self, code: str, at: datetime, *, shop_id: str | None) -> Redemption:
        """Mark the code used, once, while it is valid; otherwise say why not. `shop_id`: only
        that shop's code (a request's); None: any (the engine, which made the code)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(coupons)
                .where(coupons.c.code == code, *_in_shop(shop_id), *_usable_at(at))
                .values(redeemed_date=at)
            )
        if result.rowcount == 1:
            return Redemption.REDEEMED
        found = await self.find(code, shop_id=shop_id)
        if found is None:
            return Redemption.UNKNOWN
        if found.redeemed_date is not None:
            return Redemption.ALREADY_REDEEMED
        return Redemption.EXPIRED

    async def usable_code_for_step(self, checkout_id: str, step: int, at: datetime) -> str | None:
        """The code the checkout's step `step` (1-based, as recovery links name it) made, while
        it can still be redeemed; None when the step made none, or it expired or was used."""
        key = step_key(workflow_id_for(checkout_id), step - 1)
        async with self._engine.connect() as conn:
            code: str | None = await conn.scalar(
                select(coupons.c.code).where(
                    coupons.c.key == key, coupons.c.checkout_id == checkout_id, *_usable_at(at)
                )
            )
        return code

    async def find(self, code: str, *, shop_id: str | None) -> StoredCoupon | None:
        """The coupon of this code; `shop_id` as for `redeem_explained`."""
        statement = select(coupons).where(coupons.c.code == code, *_in_shop(shop_id))
        async with self._engine.connect() as conn:
            row = (await conn.execute(statement)).first()
        if row is None:
            return None
        internal = ("key", "shop_id")
        return StoredCoupon(**{k: v for k, v in row._mapping.items() if k not in internal})

    async def is_redeemed(self, code: str) -> bool:
        async with self._engine.connect() as conn:
            redeemed = await conn.scalar(
                select(coupons.c.redeemed_date).where(coupons.c.code == code)
            )
        return redeemed is not None

    async def codes_for(self, checkout_id: str) -> list[str]:
        """Every code made for a checkout, oldest first (for operators and tests)."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(coupons.c.code)
                .where(coupons.c.checkout_id == checkout_id)
                .order_by(coupons.c.created_date, coupons.c.code)
            )
            return [row.code for row in rows]
