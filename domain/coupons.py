"""Discount codes for recovery emails, behind a provider a shop can replace with its own.

A provider must be idempotent on the step key: asked twice for the same key (an activity retried
after a lost answer), it returns the code it made the first time. That is how a step creates one
code however often it runs.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain.policy import Coupon


@dataclass(frozen=True)
class IssuedCoupon:
    code: str
    expires: datetime
    percent_off: int | None
    amount_off: str | None
    """A decimal string in `currency`."""
    currency: str


class CouponProvider(Protocol):
    async def issue(
        self, key: str, checkout_id: str, spec: Coupon, currency: str, now: datetime
    ) -> IssuedCoupon:
        """The code for this step key: made now, or the one made for the key before."""
        ...

    async def redeem(self, code: str, at: datetime) -> bool:
        """Mark a code used; False when it is unknown, expired or used already."""
        ...

    async def is_redeemed(self, code: str) -> bool: ...
