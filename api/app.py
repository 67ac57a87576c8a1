"""The HTTP service: one FastAPI app with the checkout API, subscriptions and the codec endpoint."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from temporalio.converter import PayloadCodec

from api.auth import Authenticator
from api.checkout_routes import buyer_router, checkout_router
from api.codec_routes import (
    CODEC_PATH,
    SESSION_CODEC_PATH,
    CodecAccess,
    add_codec_cors,
    codec_router,
    parse_origins,
)
from api.coupon_routes import coupon_router
from api.dashboard import DashboardConfig, dashboard_router
from api.dashboard.session import SessionCookies
from api.errors import BodySizeLimit, install_error_handlers
from api.feedback.source import FeedbackSource
from api.feedback_routes import feedback_router
from api.rate_limit import AddressRateLimit, RateLimiter, RateLimits, signed_link_path
from api.readiness_routes import readiness_router
from api.request_metrics import RequestMetrics
from api.revenue_routes import revenue_router
from api.schemas import query_body_schema, report_body_schema
from api.shop_routes import ShopCheck, shop_router
from api.sms_routes import SmsInbound, sms_router
from api.subscription_routes import subscription_router
from api.unsubscribe_routes import unsubscribe_router
from domain.coupon_link import CouponLink
from domain.links import LinkSigner
from domain.policy import RecoveryPolicy
from service.checkouts import CheckoutService
from service.readiness import Check
from service.reporting_policy import CachedReportingPolicy
from store.api_keys import ApiKeyStore
from store.coupons import StoreCouponProvider
from store.engine_policy import EnginePolicyStore
from store.feedback import FeedbackStore
from store.secret_box import SecretBox
from store.shops import ShopStore
from store.sms_sends import SmsStops
from store.sql import SqlStore
from store.subscriptions import SubscriptionStore
from telemetry import tracing
from telemetry.tracing import TracedRequests

API_VERSION = "1.0.0"


@dataclass(frozen=True)
class ApiParts:
    """Everything the routes use; opened and closed by whoever runs the app."""

    service: CheckoutService
    store: SqlStore
    policy: RecoveryPolicy
    """This process's configured policy: reports get it only until a worker publishes the
    engine's (service.reporting_policy)."""
    links: LinkSigner
    codec: PayloadCodec | None
    codec_cors_origins: str
    max_body_bytes: int
    dashboard: DashboardConfig | None = None
    readiness_checks: Mapping[str, Check] = field(default_factory=dict)
    """What `/readyz` checks, by name (workers.api_server builds them)."""
    rate_limits: RateLimits = field(default_factory=RateLimits)
    webhook_secrets: SecretBox | None = None
    """Seals subscribers' signing secrets in the store; None keeps them as given (tests)."""
    coupon_link: CouponLink | None = None
    """How the recovery link hands a step's coupon to the checkout; None: it does not."""
    shop_check: ShopCheck | None = None
    """Renders a shop's policy with its templates before POST/PATCH /ecom/v1/shops store it;
    None: settings are only parsed."""
    sms_inbound: SmsInbound | None = None
    """The SMS provider's inbound webhook (STOP replies); None: no SMS settings, no route."""
    feedback_sources: Mapping[str, FeedbackSource] = field(default_factory=dict)
    """The relays' bounce and complaint webhooks configured, by provider name
    (api.feedback.sources); none: /feedback/v1/* answers 404."""


def create_app(parts: ApiParts) -> FastAPI:
    app = FastAPI(
        title="Checkout recovery API",
        version=API_VERSION,
        description=(
            "Report abandoned checkouts, signal recovery, read and query them, and subscribe to "
            "their events. Every route but the signed recovery link needs an API key "
            "(`Authorization: Bearer crk_...`) with the scope it names."
        ),
    )
    install_error_handlers(app)
    limits = parts.rate_limits
    shops = ShopStore(parts.store.engine)
    auth = Authenticator(
        ApiKeyStore(parts.store.engine),
        limiter=RateLimiter(limits.key_rate, limits.key_burst),
        shops=shops,
    )
    # Before the checkout routes: their paths would otherwise match /{checkout_id}.
    app.include_router(unsubscribe_router(parts.service, parts.links))
    app.include_router(revenue_router(parts.store, auth))
    coupons = StoreCouponProvider(parts.store.engine)
    app.include_router(coupon_router(coupons, auth))
    app.include_router(buyer_router(parts.service, auth))
    # Reports get the running engine's policy; this process's own only until a worker published.
    reporting = CachedReportingPolicy(
        EnginePolicyStore(parts.store.engine), parts.policy, shops=shops
    )
    app.include_router(
        checkout_router(
            parts.service,
            reporting,
            parts.links,
            auth,
            coupons=coupons,
            coupon_link=parts.coupon_link,
        )
    )
    subscriptions = SubscriptionStore(parts.store.engine, parts.webhook_secrets)
    app.include_router(subscription_router(subscriptions, auth))
    app.include_router(shop_router(shops, auth, parts.shop_check, parts.webhook_secrets))
    if parts.sms_inbound is not None:
        app.include_router(sms_router(parts.sms_inbound, SmsStops(parts.store)))
    app.include_router(feedback_router(parts.feedback_sources, FeedbackStore(parts.store)))
    codec_origins = parse_origins(parts.codec_cors_origins)
    codec_paths = [CODEC_PATH]
    if parts.dashboard is None:
        app.include_router(codec_router(parts.codec, CodecAccess(auth, None, codec_origins)))
    else:
        # The Web UI, told to include credentials, sends the operator's dashboard session.
        sessions = SessionCookies(
            parts.dashboard.session_secret, timedelta(hours=parts.dashboard.session_hours)
        )
        access = CodecAccess(auth, sessions, codec_origins)
        app.include_router(codec_router(parts.codec, access))
        app.include_router(
            codec_router(parts.codec, access, SESSION_CODEC_PATH, include_in_schema=False)
        )
        codec_paths.append(SESSION_CODEC_PATH)
    if parts.dashboard is not None:
        app.include_router(
            dashboard_router(
                parts.dashboard,
                parts.store,
                auth,
                parts.service.client,
                parts.policy,
                service=parts.service,
            )
        )

    @app.get("/healthz", tags=["service"], summary="Liveness: the service answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(readiness_router(parts.readiness_checks))

    add_codec_cors(app, codec_origins, codec_paths)
    app.add_middleware(BodySizeLimit, max_bytes=parts.max_body_bytes)
    app.add_middleware(
        AddressRateLimit,
        limiter=RateLimiter(limits.address_rate, limits.address_burst),
        limited=signed_link_path,
    )
    # Last, so outermost: the request span covers every other middleware too.
    traced = tracing.current().provider
    if traced is not None:
        app.add_middleware(TracedRequests, tracer_provider=traced)
    # Added last, so outermost: it times every answer, refusals by the middlewares included.
    app.add_middleware(RequestMetrics)
    _document_raw_bodies(app)
    return app


def _document_raw_bodies(app: FastAPI) -> None:
    """Add the schemas of the bodies that routes read themselves to the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        report, definitions = report_body_schema()
        for name, definition in definitions.items():
            schemas.setdefault(name, definition)
        schemas["ReportedCheckout"] = report
        schemas["CheckoutQueryBody"] = query_body_schema()
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
