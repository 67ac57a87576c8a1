"""Running the HTTP service with uvicorn, alone (`checkout-recovery api`) or in the dev stack."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from activities.email_compose import EmailComposer
from activities.email_message import Sender
from activities.email_preview import EmailPreviews, SampleCoupons
from api.app import ApiParts, create_app
from api.dashboard import DashboardConfig
from api.feedback.sources import feedback_sources
from api.rate_limit import RateLimits
from api.sms_routes import SmsInbound
from devstack.mailbox import read_mailbox
from domain.access import Scope
from domain.links import LinkSigner
from domain.policy import RecoveryPolicy
from service.checkouts import CheckoutService
from service.readiness import Check, backlog_check, store_check, temporal_check
from service.reporting_policy import policy_for_reports
from store.api_keys import ApiKeyStore
from store.engine_policy import EnginePolicyStore
from store.shops import ShopStore
from store.sql import SqlStore
from workers.link_secret import dashboard_secret, link_signer_for, webhook_secret_box
from workers.settings import Settings
from workers.shop_checks import check_shop_rendering
from workers.temporal_client import codec_from_settings
from workers.worker import deployment_dkim, shop_composers_for, template_renderer_for

logger = logging.getLogger(__name__)

DEV_KEY_FILE = "dev-api-key"


def build_app(
    settings: Settings,
    service: CheckoutService,
    store: SqlStore,
    policy: RecoveryPolicy,
    maildir: Path | None = None,
) -> FastAPI:
    """`maildir`: the dev stack's received mail, shown on the dashboard's mailbox page."""
    links = link_signer_for(settings)
    return create_app(
        ApiParts(
            service=service,
            store=store,
            policy=policy,
            links=links,
            codec=codec_from_settings(settings),
            codec_cors_origins=settings.codec_cors_origins,
            max_body_bytes=settings.max_body_bytes,
            rate_limits=RateLimits(
                key_rate=settings.api_rate_per_second,
                key_burst=settings.api_burst,
                address_rate=settings.public_rate_per_second,
                address_burst=settings.public_burst,
            ),
            dashboard=DashboardConfig(
                session_secret=dashboard_secret(settings),
                workflow_link=settings.workflow_link,
                mailbox=partial(read_mailbox, maildir) if maildir is not None else None,
                previews=email_previews(settings, store, policy, links),
            ),
            webhook_secrets=webhook_secret_box(settings),
            readiness_checks=readiness_checks(settings, service),
            coupon_link=settings.coupon_link(),
            shop_check=partial(check_shop_rendering, deployment=settings),
            sms_inbound=sms_inbound_for(settings),
            feedback_sources=feedback_sources(settings),
        )
    )


def email_previews(
    settings: Settings, store: SqlStore, policy: RecoveryPolicy, links: LinkSigner
) -> EmailPreviews:
    """The dashboard's step previews and test sends: the email step's composer, wired as the
    worker wires it, over the engine's policy (this process's `policy` until a worker published
    one) and the worker's relay."""
    composer = EmailComposer(
        template_renderer_for(settings),
        Sender(settings.mail_from, dkim=deployment_dkim(settings)),
        settings.shop_name,
        links=links,
        unsubscribe_mailbox=settings.unsubscribe_mailbox,
    )
    engine_policies = EnginePolicyStore(store.engine)
    shops = ShopStore(store.engine)

    async def shop_policy(shop_id: str) -> RecoveryPolicy:
        chosen = await policy_for_reports(
            engine_policies,
            override=None,
            configured=lambda: policy,
            shops=shops,
            shop_id=shop_id,
        )
        return chosen.policy

    return EmailPreviews(
        composer,
        store,
        shop_policy,
        settings.smtp_config(),
        composers=shop_composers_for(settings, store, SampleCoupons()),
    )


def sms_inbound_for(settings: Settings) -> SmsInbound | None:
    """The SMS provider's inbound webhook, when its auth token (which signs it) is set."""
    token = settings.sms_auth_token
    if token is None:
        return None
    return SmsInbound(token.get_secret_value(), settings.public_url)


def readiness_checks(settings: Settings, service: CheckoutService) -> dict[str, Check]:
    """What the API's /readyz checks: the store, Temporal, and a hand-off that is not stuck."""
    max_age = timedelta(seconds=settings.readiness_backlog_seconds)
    return {
        "store": store_check(service.handoff),
        "temporal": temporal_check(service.client),
        "handoff_backlog": backlog_check(service.handoff, max_age),
    }


@contextlib.asynccontextmanager
async def serving(app: FastAPI, host: str, port: int) -> AsyncIterator[uvicorn.Server]:
    """Serve `app` in the background for the duration of the block.

    Fails at once, naming the address, when the port cannot be bound.
    """
    # log_config=None: uvicorn's records go to the root logger like every other (the process's
    # format and its redaction, telemetry/logs.py), not to a handler of uvicorn's own. No
    # access log: request lines carry query strings, and those carry signed tokens.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        log_config=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="api-server")
    while not server.started:
        if task.done():
            # uvicorn exits (SystemExit) when it cannot bind; say which address was taken.
            with contextlib.suppress(BaseException):
                task.result()
            raise RuntimeError(f"the API could not listen on {host}:{port} (port in use?)")
        await asyncio.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


async def dev_api_key(store: SqlStore, data_dir: Path) -> str:
    """The dev stack's API key: kept in the data folder, made again if it was revoked."""
    path = data_dir / DEV_KEY_FILE
    keys = ApiKeyStore(store.engine)
    if path.exists():
        token = path.read_text().strip()
        if await keys.verify(token) is not None:
            return token
    _, token = await keys.create("development", frozenset({Scope.READ, Scope.MANAGE}))
    path.write_text(token)
    path.chmod(0o600)
    return token
