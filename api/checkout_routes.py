"""The reference REST surface under /ecom/v1/abandoned-checkout, plus ingest and recovery.

Every keyed route takes its shop from api.auth (`RequestShop`) and names it in each service call;
the signed recovery link acts in the checkout's own shop (its id is ours, and signed).
"""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from api.auth import Authenticator, RequestShop
from api.errors import ERROR_RESPONSES, ApiError
from api.request_body import checked_path_ids, json_body_doc, read_json
from api.schemas import (
    ActivityList,
    BuyerRecoveryResponse,
    CheckoutEnvelope,
    Empty,
    QueryResponse,
    RecoverBody,
    RecoverBuyerBody,
    RecoverByReferenceBody,
)
from domain.access import Scope
from domain.activity import NEWEST_ACTIVITIES
from domain.checkout import AbandonedCheckout
from domain.coupon_link import CouponLink
from domain.errors import InvalidInputError
from domain.links import LinkCheck, LinkSigner
from domain.query import parse_query
from domain.report import parse_report
from service.checkouts import (
    CheckoutErasedError,
    CheckoutIdTakenError,
    CheckoutNotFoundError,
    CheckoutService,
)
from service.reporting_policy import CachedReportingPolicy
from store.checkout_query import page_json
from store.coupons import StoreCouponProvider
from telemetry import metrics

PREFIX = "/ecom/v1/abandoned-checkout"


def checkout_router(
    service: CheckoutService,
    reporting_policy: CachedReportingPolicy,
    links: LinkSigner,
    auth: Authenticator,
    *,
    coupons: StoreCouponProvider | None = None,
    coupon_link: CouponLink | None = None,
) -> APIRouter:
    # `coupons` and `coupon_link`: the recovery link hands a step's coupon to the checkout in
    # the shop's form (domain.coupon_link); without either, it sends to the checkout URL.
    router = APIRouter(
        prefix=PREFIX,
        tags=["abandoned checkouts"],
        responses=ERROR_RESPONSES,
        dependencies=[Depends(checked_path_ids)],
    )

    @router.post(
        "",
        status_code=201,
        summary="Report an abandoned checkout (starts its recovery flow once)",
        responses={200: {"model": CheckoutEnvelope, "description": "Reported before"}},
        response_model=CheckoutEnvelope,
        openapi_extra=json_body_doc("#/components/schemas/ReportedCheckout"),
    )
    async def report(
        request: Request, shop: Annotated[RequestShop, Depends(auth.shop(Scope.MANAGE))]
    ) -> JSONResponse:
        """Idempotent on checkoutId / cartId: a second report of the same checkout answers 200
        with the same abandoned checkout and updates its snapshot; it never starts a second
        flow. Accepts `_id`, `_createdDate`, `_updatedDate` (SDK spelling) too.

        The answer's `flowState` is STARTED when Temporal confirmed the flow, PENDING when it
        did not in time (Temporal down or slow): the report is kept and its flow starts as soon
        as Temporal takes it.

        A new checkout's flow gets the recovery policy of the engine that runs the flows (the
        one its workers published as they started); until a worker has started, this service's
        own configured policy."""
        checkout = await _read_report(request)
        chosen = await reporting_policy.current()
        try:
            outcome = await service.report(checkout, chosen.policy, shop_id=shop.shop_id)
        except (CheckoutErasedError, CheckoutIdTakenError) as err:
            raise _refused(err) from None
        found = outcome.stored or await _get(service, outcome.checkout_id, shop)
        return _checkout_response(found, 201 if outcome.new else 200)

    @router.post(
        "/query",
        summary="Query abandoned checkouts",
        response_model=QueryResponse,
        openapi_extra=json_body_doc("#/components/schemas/CheckoutQueryBody", required=False),
    )
    async def query(
        request: Request, shop: Annotated[RequestShop, Depends(auth.shop(Scope.READ))]
    ) -> Response:
        """Filter (`$eq $ne $exists $in $hasSome $startsWith $gt $gte $lt $lte`, `$and $or
        $not`), sort, and page by `paging {limit, offset}` or `cursorPaging {limit, cursor}`;
        `limit` at most 100."""
        parsed = parse_query(await read_json(request, required=False))
        page = await service.query(parsed, shop_id=shop.shop_id)
        # The page's JSON written once, as bytes (the stored snapshots spliced in as they are).
        return Response(page_json(page), media_type="application/json")

    @router.post(
        "/recover",
        summary="Mark a checkout recovered, by the shop's checkoutId or cartId",
        response_model=CheckoutEnvelope,
    )
    async def recover_by_reference(
        body: RecoverByReferenceBody, shop: Annotated[RequestShop, Depends(auth.shop(Scope.MANAGE))]
    ) -> JSONResponse:
        """For services that never saw our id. Calling it twice is harmless: the first
        recovery's date and order stay."""
        if not (body.checkout_id or body.cart_id):
            raise ApiError(400, "invalid_request", "give checkoutId or cartId")
        try:
            checkout = await service.recover_by_reference(
                shop_id=shop.shop_id,
                checkout_id=body.checkout_id,
                cart_id=body.cart_id,
                order_id=body.order_id,
                recovered_at=body.checkout_recovered_date,
            )
        except CheckoutNotFoundError as err:
            raise _not_found(err) from None
        return _checkout_response(await _get(service, checkout.id or "", shop))

    @router.get(
        "/{checkout_id}",
        summary="Get an abandoned checkout (with its newest 20 activities)",
        response_model=CheckoutEnvelope,
    )
    async def get(
        checkout_id: str, shop: Annotated[RequestShop, Depends(auth.shop(Scope.READ))]
    ) -> JSONResponse:
        return _checkout_response(await _get(service, checkout_id, shop))

    @router.get(
        "/{checkout_id}/activities",
        summary="Every activity entry of a checkout, with the reasons of skipped sends",
        response_model=ActivityList,
    )
    async def activities(
        checkout_id: str, shop: Annotated[RequestShop, Depends(auth.shop(Scope.READ))]
    ) -> JSONResponse:
        found = await _get(service, checkout_id, shop, newest=None)
        return JSONResponse(
            ActivityList(activities=found.activities).model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
        )

    @router.post(
        "/{checkout_id}/recover",
        summary="Mark a checkout recovered: its flow stops, no further step runs",
        response_model=CheckoutEnvelope,
    )
    async def recover(
        checkout_id: str,
        shop: Annotated[RequestShop, Depends(auth.shop(Scope.MANAGE))],
        body: RecoverBody | None = None,
    ) -> JSONResponse:
        """Signals the running flow, or updates the record if the flow has closed. Calling it
        twice is harmless: the first recovery's date and order stay."""
        given = body or RecoverBody()
        try:
            await service.recover(
                checkout_id,
                given.order_id,
                given.checkout_recovered_date,
                shop_id=shop.shop_id,
            )
        except CheckoutNotFoundError as err:
            raise _not_found(err) from None
        return _checkout_response(await _get(service, checkout_id, shop))

    @router.delete(
        "/{checkout_id}",
        summary="Stop the flow and erase the buyer's personal data",
        response_model=Empty,
    )
    async def delete(
        checkout_id: str, shop: Annotated[RequestShop, Depends(auth.shop(Scope.MANAGE))]
    ) -> JSONResponse:
        """The checkout stays, anonymised, for the statistics; reads and queries no longer
        show it; subscribers get a `deleted` event. Deleting it again is harmless."""
        try:
            await service.delete(checkout_id, shop_id=shop.shop_id)
        except CheckoutNotFoundError as err:
            raise _not_found(err) from None
        return JSONResponse({})

    @router.get(
        "/{checkout_id}/redirect-to-checkout",
        summary="Send the buyer on to the checkout (signed recovery link, no API key)",
        status_code=302,
        response_class=Response,
        responses={
            302: {"description": "Redirect to the checkout URL"},
            410: {"description": "The link has expired"},
        },
    )
    async def redirect(
        checkout_id: str, token: Annotated[str, Query(max_length=200)] = ""
    ) -> Response:
        """Reachable without an API key only with the signed token our emails carry; records
        the click, for attribution. When the shop set a coupon link form and the step that sent
        the link made a coupon that is still good, the checkout URL carries its code."""
        verdict = links.verify(checkout_id, token)
        if verdict.check is LinkCheck.FORGED:
            raise ApiError(403, "invalid_link", "this recovery link is not valid")
        if verdict.check is LinkCheck.EXPIRED:
            raise ApiError(410, "link_expired", "this recovery link has expired")
        found = await _get(service, checkout_id, None, newest=0)
        await service.record_click(checkout_id, verdict.step, datetime.now(UTC))
        target = await _with_coupon(found, verdict.step, coupons, coupon_link)
        return RedirectResponse(target, status_code=302)

    return router


def buyer_router(service: CheckoutService, auth: Authenticator) -> APIRouter:
    """Routes about a buyer rather than one checkout; mounted before the checkout routes."""
    router = APIRouter(prefix=PREFIX, tags=["abandoned checkouts"], responses=ERROR_RESPONSES)
    shop_manage = Annotated[RequestShop, Depends(auth.shop(Scope.MANAGE))]

    @router.post(
        "/recover-buyer",
        summary="A buyer bought: recover their newest open checkout, stop the others",
        response_model=BuyerRecoveryResponse,
    )
    async def recover_buyer(body: RecoverBuyerBody, shop: shop_manage) -> JSONResponse:
        """For shops that know the order and the buyer (email, contactId, memberId or userId)
        but not the checkout it came from. The buyer's most recently updated open checkout is
        marked recovered with the order; every other open one stops before its next step with
        `stopReason: buyer_purchased` (not recovered, no revenue attributed)."""
        outcome = await service.recover_buyer(
            body.buyer_info, body.order_id, body.checkout_recovered_date, shop_id=shop.shop_id
        )
        if outcome.recovered is None:
            raise ApiError(404, "not_found", "the buyer has no open abandoned checkout")
        recovered = await _get(service, outcome.recovered.id or "", shop)
        return JSONResponse(
            {
                "abandonedCheckout": recovered.to_json_dict(),
                "stoppedCheckoutIds": outcome.stopped,
            }
        )

    return router


async def _get(
    service: CheckoutService,
    checkout_id: str,
    shop: RequestShop | None,
    newest: int | None = NEWEST_ACTIVITIES,
) -> AbandonedCheckout:
    """The checkout, 404 when it is not the request's shop's (`shop` None: a signed link's)."""
    shop_id = shop.shop_id if shop is not None else None
    try:
        found = await service.get(checkout_id, shop_id=shop_id, with_activities=newest != 0)
    except CheckoutNotFoundError as err:
        raise _not_found(err) from None
    if newest:
        return found.model_copy(update={"activities": found.activities[-newest:]})
    return found


async def _with_coupon(
    checkout: AbandonedCheckout,
    step: int | None,
    coupons: StoreCouponProvider | None,
    coupon_link: CouponLink | None,
) -> str:
    """Where the recovery link of `step` sends the buyer: the checkout URL, with the step's
    coupon in the shop's form while the code can still be redeemed (a code used or expired
    would only show the buyer an error at the checkout)."""
    if coupon_link is None or coupons is None or not step or checkout.id is None:
        return checkout.checkout_url
    code = await coupons.usable_code_for_step(checkout.id, step, datetime.now(UTC))
    return checkout.checkout_url if code is None else coupon_link.apply(checkout.checkout_url, code)


async def _read_report(request: Request) -> AbandonedCheckout:
    """The reported checkout; a body that is no report is refused, and counted so."""
    try:
        return parse_report(await read_json(request))
    except (ApiError, InvalidInputError):
        metrics.report_received("refused", "invalid")
        raise


def _refused(err: CheckoutErasedError | CheckoutIdTakenError) -> ApiError:
    if isinstance(err, CheckoutErasedError):
        return ApiError(410, "checkout_deleted", str(err))
    return ApiError(409, "conflict", str(err))


def _not_found(err: CheckoutNotFoundError) -> ApiError:
    return ApiError(404, "not_found", str(err))


def _checkout_response(checkout: AbandonedCheckout, status: int = 200) -> JSONResponse:
    return JSONResponse({"abandonedCheckout": checkout.to_json_dict()}, status_code=status)
