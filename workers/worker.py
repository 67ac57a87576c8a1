"""The worker: wires settings into activity classes and runs workflows and activities."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.dkim import DkimSigner, signer_for
from activities.email import EmailActivities
from activities.email_compose import EmailComposer
from activities.email_message import Sender
from activities.notification import NotificationActivities
from activities.records import RecordActivities
from activities.rendering import TEMPLATES_DIR, TemplateRenderer
from activities.shop_composers import ShopComposers
from activities.sms import SmsActivities
from activities.sms_provider import TwilioSms
from activities.smtp_pool import SmtpPool
from activities.tasks import TaskActivities
from activities.template_source import TemplateSource
from activities.webhooks import WebhookActivities
from domain.coupons import CouponProvider
from domain.dkim import DkimError
from domain.errors import InvalidInputError
from domain.policy import RecoveryPolicy
from domain.shops import EffectiveShopSettings
from service.handoff import Handoff
from service.reconciler import Reconciler
from store.engine_policy import EnginePolicyStore
from store.outbox import Outbox
from store.shops import ShopStore, open_dkim
from store.sql import SqlStore
from store.subscriptions import SubscriptionStore
from telemetry.log_context import LogContextInterceptor
from workers.background import running_in_background
from workers.coupon_provider import coupon_provider_for
from workers.event_dispatch import EventDispatcher
from workers.link_secret import link_signer_for, webhook_secret_box
from workers.policy_files import load_policy
from workers.search_attributes import search_attributes_registered
from workers.settings import Settings
from workflows.abandoned_checkout import AbandonedCheckoutWorkflow
from workflows.event_delivery import EventDeliveryWorkflow

logger = logging.getLogger(__name__)

WORKFLOWS = [AbandonedCheckoutWorkflow, EventDeliveryWorkflow]
# Our pure domain models (and the e-mail syntax checker they load lazily) are imported once,
# outside the sandbox, instead of per workflow run.
SANDBOX_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "domain",
        "email_validator",
        "idna",
        # The tracing interceptor's workflow side (telemetry/tracing.py) must share the
        # worker's OpenTelemetry context module, as the SDK's own OpenTelemetry plugin arranges.
        "opentelemetry",
    )
)


def template_renderer_for(settings: Settings | EffectiveShopSettings) -> TemplateRenderer:
    """The templates the engine renders: the shipped ones, each replaced by the shop's own file
    in CHECKOUT_RECOVERY_TEMPLATES_DIR (or the shop's templates folder) when it has one."""
    folder = settings.templates_dir
    if folder is not None and not folder.is_dir():
        raise NotADirectoryError(f"CHECKOUT_RECOVERY_TEMPLATES_DIR {folder}: no such folder")
    return TemplateRenderer(TemplateSource(TEMPLATES_DIR, folder), settings.default_language)


def shop_composers_for(
    settings: Settings, store: SqlStore, coupons: CouponProvider
) -> ShopComposers:
    """The email composer of each shop that sets anything of its own (domain.shops): its
    sender, name, links (its public URL, signed with the deployment's secret), language and
    templates; a shop's values were checked when they were set (`shops set`)."""
    signer = link_signer_for(settings)
    deployment = deployment_dkim(settings)
    box = webhook_secret_box(settings)

    def build(shop: EffectiveShopSettings) -> EmailComposer:
        dkim = signer_for(shop.dkim, shop.mail_from, deployment, lambda key: open_dkim(box, key))
        return EmailComposer(
            template_renderer_for(shop),
            Sender(shop.mail_from, shop.reply_to, shop.message_id_domain, dkim),
            shop.shop_name,
            links=signer.for_public_url(shop.public_url),
            coupons=coupons,
            unsubscribe_mailbox=shop.unsubscribe_mailbox,
        )

    return ShopComposers(ShopStore(store.engine), settings, build)


def deployment_dkim(settings: Settings) -> DkimSigner | None:
    """The deployment's DKIM signer (CHECKOUT_RECOVERY_DKIM_...); None when not configured.
    Raises InvalidInputError naming the variable for a key file that does not sign, as a bad
    policy is refused: before the worker polls."""
    try:
        key = settings.dkim_key()
    except DkimError as err:
        raise InvalidInputError("DKIM settings", [str(err)]) from None
    if key is None or settings.dkim_domain is None or settings.dkim_selector is None:
        return None
    return DkimSigner(settings.dkim_domain, settings.dkim_selector, key)


def check_policy(settings: Settings, renderer: TemplateRenderer | None = None) -> RecoveryPolicy:
    """Load the configured policy and render every template it names, in each language, for a
    sample checkout and edge cases, and check every file of the shop's own templates
    (activities.template_check); raises InvalidInputError."""
    return load_policy(settings.policy, renderer or template_renderer_for(settings))


@contextlib.asynccontextmanager
async def open_worker(client: Client, settings: Settings, store: SqlStore) -> AsyncIterator[Worker]:
    """A worker with every activity wired in; its connections close when the block ends."""
    renderer = template_renderer_for(settings)
    dkim = deployment_dkim(settings)
    # Fails here, before polling, when the policy or one of its templates is wrong (the check
    # renders with the worker's own renderer, which keeps the compiled templates).
    policy = check_policy(settings, renderer)
    # Commands reporting from elsewhere give their checkouts this one (service.reporting_policy).
    await EnginePolicyStore(store.engine).publish(policy, settings.policy)
    pool = SmtpPool(settings.smtp_config())
    secret = settings.notification_signing_secret
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(20.0)) as http,
        # Deliveries follow no redirects: a subscriber URL is used exactly as registered.
        httpx.AsyncClient(
            timeout=httpx.Timeout(settings.webhook_timeout_seconds), follow_redirects=False
        ) as webhook_http,
    ):
        coupons = coupon_provider_for(settings, store)
        # One per-shop cache for both channels: a text renders as its shop's email would.
        composers = shop_composers_for(settings, store, coupons)
        email = EmailActivities(
            store,
            pool,
            renderer,
            Sender(settings.mail_from, dkim=dkim),
            settings.shop_name,
            links=link_signer_for(settings),
            coupons=coupons,
            unsubscribe_mailbox=settings.unsubscribe_mailbox,
            composers=composers,
        )
        notification = NotificationActivities(
            store,
            http,
            renderer,
            settings.shop_name,
            secret.get_secret_value() if secret else None,
        )
        tasks = TaskActivities(store, renderer, settings.shop_name, settings.workflow_link)
        sms_config = settings.sms_config()
        if sms_config is None:
            # Loud only when the policy has SMS steps; a shop's own policy may have some too.
            texts = any(step.action == "sms" for step in policy.steps)
            logger.log(
                logging.WARNING if texts else logging.INFO,
                "No SMS provider configured (CHECKOUT_RECOVERY_SMS_ACCOUNT_SID, _SMS_AUTH_TOKEN, "
                "_SMS_FROM): SMS steps record sms_not_configured",
            )
        sms = SmsActivities(
            store,
            TwilioSms(http, sms_config) if sms_config is not None else None,
            renderer,
            settings.shop_name,
            links=link_signer_for(settings),
            composers=composers,
        )
        records = RecordActivities(store)
        outbox = Outbox(store.engine)
        subscriptions = SubscriptionStore(store.engine, webhook_secret_box(settings))
        webhooks = WebhookActivities(outbox, subscriptions, webhook_http)
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=WORKFLOWS,
            activities=[
                email.send_recovery_email,
                notification.send_staff_notification,
                tasks.create_staff_task,
                sms.send_recovery_sms,
                records.record_activity,
                records.record_recovery,
                webhooks.list_event_subscribers,
                webhooks.deliver_event,
            ],
            workflow_runner=SANDBOX_RUNNER,
            # Log lines of a step activity name its checkout and step (tracing's interceptor,
            # when on, comes from the client).
            interceptors=[LogContextInterceptor()],
            max_concurrent_activities=settings.max_concurrent_activities,
            max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
            max_cached_workflows=settings.max_cached_workflows,
            graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace_seconds),
        )
        dispatcher = EventDispatcher(client, outbox, subscriptions, settings.task_queue)
        handoff = Handoff(client, store.commands, settings.task_queue)
        reconciler = Reconciler(
            client,
            store,
            handoff,
            policy,
            search_attributes=await search_attributes_registered(client),
        )
        try:
            async with (
                running_in_background(dispatcher.run(), "event-dispatcher"),
                running_in_background(handoff.run(settings.handoff_interval_seconds), "handoff"),
                running_in_background(
                    reconcile_periodically(reconciler, settings.reconcile_interval_seconds),
                    "reconciler",
                ),
            ):
                yield worker
        finally:
            await pool.close()


async def reconcile_periodically(reconciler: Reconciler, interval_seconds: float) -> None:
    """Reconcile now and then, for ever (never when the interval is 0)."""
    if interval_seconds <= 0:
        return
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            report = await reconciler.reconcile()
        except Exception:
            logger.exception("Reconciling the store with Temporal failed; trying again later")
            continue
        for finding in report.findings:
            logger.warning(
                "Reconciler: %s %s, %s (%s)",
                finding.checkout_id,
                finding.problem,
                finding.action,
                finding.detail,
            )


async def run_until_stopped(worker: Worker, stop: asyncio.Event) -> None:
    """Run the worker until `stop` is set; running activities get the grace period to finish."""
    async with worker:
        await stop.wait()
        logger.info("Stopping worker: letting running activities finish")
    logger.info("Worker stopped")


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, so process managers and Ctrl-C stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
