"""Recovered revenue per step and attribution: what each step of the policy brought back."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from api.auth import Authenticator, RequestShop
from api.errors import ERROR_RESPONSES
from domain.access import Scope
from domain.checkout import Moment
from store.attribution import revenue_by_step
from store.sql import SqlStore

PATH = "/ecom/v1/abandoned-checkout/recovered-revenue"


class StepRevenueRow(BaseModel):
    step: int | None
    """None for organic recoveries."""
    attribution: str
    currency: str
    recoveries: int
    revenue: str
    """A decimal string: totals are exact and never converted between currencies."""


class RevenueResponse(BaseModel):
    rows: list[StepRevenueRow]


def revenue_router(store: SqlStore, auth: Authenticator) -> APIRouter:
    router = APIRouter(tags=["abandoned checkouts"], responses=ERROR_RESPONSES)

    @router.get(
        PATH,
        summary="Recovered revenue per step and attribution",
        response_model=RevenueResponse,
    )
    async def recovered_revenue(
        shop: Annotated[RequestShop, Depends(auth.shop(Scope.READ))],
        since: Annotated[Moment | None, Query(description="Recovered at or after")] = None,
        until: Annotated[Moment | None, Query(description="Recovered before")] = None,
    ) -> RevenueResponse:
        rows = await revenue_by_step(store.engine, since, until, shop_id=shop.shop_id)
        return RevenueResponse(
            rows=[
                StepRevenueRow(
                    step=r.step,
                    attribution=r.attribution,
                    currency=r.currency,
                    recoveries=r.recoveries,
                    revenue=str(r.revenue),
                )
                for r in rows
            ]
        )

    return router
