"""Coupons made by the default provider: the shop's checkout looks a code up and redeems it.

A shop with its own coupon provider validates codes in its own system; these routes read the
store's `coupons` table only.
"""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime

from api.auth import Authenticator, RequestShop
from api.errors import ERROR_RESPONSES, ApiError
from api.request_body import checked_path_ids
from domain.access import Scope
from domain.base import CamelModel
from store.coupons import Redemption, StoreCouponProvider, StoredCoupon

PREFIX = "/ecom/v1/abandoned-checkout/coupons"


class CouponView(CamelModel):
    code: str
    checkout_id: str
    percent_off: int | None = None
    amount_off: str | None = None
    currency: str | None = None
    created_date: AwareDatetime
    expires_date: AwareDatetime
    redeemed_date: AwareDatetime | None = None


class CouponEnvelope(CamelModel):
    coupon: CouponView


_REFUSALS = {
    Redemption.UNKNOWN: (404, "not_found", "no coupon with this code"),
    Redemption.ALREADY_REDEEMED: (409, "coupon_redeemed", "this coupon was redeemed already"),
    Redemption.EXPIRED: (410, "coupon_expired", "this coupon has expired"),
}


def coupon_router(coupons: StoreCouponProvider, auth: Authenticator) -> APIRouter:
    router = APIRouter(
        prefix=PREFIX,
        tags=["coupons"],
        responses=ERROR_RESPONSES,
        dependencies=[Depends(checked_path_ids)],
    )

    @router.get(
        "/{code}",
        response_model=CouponEnvelope,
        response_model_exclude_none=True,
        summary="Look a coupon code up",
    )
    async def get_coupon(
        code: str, shop: Annotated[RequestShop, Depends(auth.shop(Scope.READ))]
    ) -> CouponEnvelope:
        """Its discount, expiry and whether it was redeemed (the request's shop's codes only)."""
        return CouponEnvelope(coupon=_view(await _require(coupons, code, shop)))

    @router.post(
        "/{code}/redeem",
        response_model=CouponEnvelope,
        response_model_exclude_none=True,
        responses={409: {"description": "Redeemed already"}, 410: {"description": "Expired"}},
        summary="Redeem a coupon code (once)",
    )
    async def redeem(
        code: str, shop: Annotated[RequestShop, Depends(auth.shop(Scope.MANAGE))]
    ) -> CouponEnvelope:
        """Marks the code used; a second redemption is refused with 409, an expired code with
        410."""
        outcome = await coupons.redeem_explained(code, datetime.now(UTC), shop_id=shop.shop_id)
        if outcome in _REFUSALS:
            status, error_code, message = _REFUSALS[outcome]
            raise ApiError(status, error_code, message)
        return CouponEnvelope(coupon=_view(await _require(coupons, code, shop)))

    return router


async def _require(coupons: StoreCouponProvider, code: str, shop: RequestShop) -> StoredCoupon:
    found = await coupons.find(code, shop_id=shop.shop_id)
    if found is None:
        status, error_code, message = _REFUSALS[Redemption.UNKNOWN]
        raise ApiError(status, error_code, message)
    return found


def _view(coupon: StoredCoupon) -> CouponView:
    return CouponView(
        code=coupon.code,
        checkout_id=coupon.checkout_id,
        percent_off=coupon.percent_off,
        amount_off=coupon.amount_off,
        currency=coupon.currency,
        created_date=coupon.created_date,
        expires_date=coupon.expires_date,
        redeemed_date=coupon.redeemed_date,
    )
