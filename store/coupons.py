"""The default coupon provider: codes made here and kept in the store's `coupons` table.

Its codes only mean something to a shop that checks them (through `redeem`/`is_redeemed`, or the
recovery call naming the code); a shop with its own discount system plugs in a provider that calls
it instead (see domain.coupons.CouponProvider and the coupon_provider setting).
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
from store.schema import coupons

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
        return await self.redeem_explained(code, at) is Redemption.REDEEMED

    async def redeem_explained(self, code: str, at: datetime) -> Redemption:
        """Mark the code used, once, while it is valid; otherwise say why not."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(coupons)
                .where(coupons.c.code == code, *_usable_at(at))
                .values(redeemed_date=at)
            )
        if result.rowcount == 1:
            return Redemption.REDEEMED
        found = await self.find(code)
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

    async def find(self, code: str) -> StoredCoupon | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(coupons).where(coupons.c.code == code))).first()
        if row is None:
            return None
        return StoredCoupon(**{k: v for k, v in row._mapping.items() if k != "key"})

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
