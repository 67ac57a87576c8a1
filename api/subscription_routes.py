"""Webhook subscriptions: add, list and remove the URLs that receive checkout events."""

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api.auth import Authenticator, RequestShop
from api.errors import ERROR_RESPONSES, ApiError, FieldProblem
from api.request_body import checked_path_ids
from api.schemas import (
    Empty,
    SubscriptionBody,
    SubscriptionEnvelope,
    SubscriptionList,
    SubscriptionView,
)
from domain.access import Scope
from domain.events import parse_event_filter
from domain.webhook_signing import check_secret, new_secret
from store.subscriptions import Subscription, SubscriptionStore

PREFIX = "/ecom/v1/abandoned-checkout-subscriptions"


def subscription_router(subscriptions: SubscriptionStore, auth: Authenticator) -> APIRouter:
    # Subscriptions say where checkout data goes: every route needs the manage scope. A
    # subscription is the request's shop's, and receives that shop's events only.
    router = APIRouter(
        prefix=PREFIX,
        tags=["event subscriptions"],
        responses=ERROR_RESPONSES,
        dependencies=[Depends(checked_path_ids)],
    )
    shop_manage = Annotated[RequestShop, Depends(auth.shop(Scope.MANAGE))]

    @router.post(
        "", status_code=201, response_model=SubscriptionEnvelope, summary="Subscribe a URL"
    )
    async def add(body: SubscriptionBody, shop: shop_manage) -> JSONResponse:
        """The answer holds the signing secret; it is shown this once."""
        problems = _problems(body)
        if problems:
            raise ApiError(400, "invalid_request", "the subscription is not valid", problems)
        secret = body.secret or new_secret()
        wanted = parse_event_filter(body.events)
        made = await subscriptions.add(body.url, secret, wanted, shop_id=shop.shop_id)
        view = _view(made).model_copy(update={"secret": secret})
        return JSONResponse({"subscription": view.to_json_dict()}, status_code=201)

    @router.get("", response_model=SubscriptionList, summary="List subscriptions")
    async def listing(shop: shop_manage) -> JSONResponse:
        views = [_view(s).to_json_dict() for s in await subscriptions.list(shop_id=shop.shop_id)]
        return JSONResponse({"subscriptions": views})

    @router.delete("/{subscription_id}", response_model=Empty, summary="Remove a subscription")
    async def remove(subscription_id: str, shop: shop_manage) -> JSONResponse:
        """Deliveries still in flight to it stop at their next attempt."""
        if not await subscriptions.remove(subscription_id, shop_id=shop.shop_id):
            raise ApiError(404, "not_found", f"no subscription with id {subscription_id!r}")
        return JSONResponse({})

    return router


def _problems(body: SubscriptionBody) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    parts = urlsplit(body.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(FieldProblem(field="url", message="must be an http(s) URL"))
    try:
        parse_event_filter(body.events)
    except ValueError as err:
        problems.append(FieldProblem(field="events", message=str(err)))
    if body.secret is not None:
        try:
            check_secret(body.secret)
        except ValueError as err:
            problems.append(FieldProblem(field="secret", message=str(err)))
    return problems


def _view(subscription: Subscription) -> SubscriptionView:
    return SubscriptionView(
        id=subscription.id,
        url=subscription.url,
        events=sorted(subscription.events),
        created_date=subscription.created_date,
    )
