"""The email step: render, send once, record the outcome."""

import logging

import aiosmtplib
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.email_message import Sender, build_message, message_id_for
from activities.message_context import checkout_context
from activities.rendering import TemplateRenderer
from activities.smtp_pool import SmtpPool
from activities.step_checkout import missing_checkout
from domain.activity import Activity, ActivityType, NotSentReason
from domain.checkout import CheckoutStatus
from domain.links import LinkSigner
from domain.steps import PERMANENT_EMAIL_FAILURE, SEND_EMAIL, EmailStepRequest
from store.sql import SendClaim, SqlStore

logger = logging.getLogger(__name__)


class EmailActivities:
    def __init__(
        self,
        store: SqlStore,
        pool: SmtpPool,
        renderer: TemplateRenderer,
        sender: Sender,
        shop_name: str,
        *,
        links: LinkSigner | None = None,
    ) -> None:
        self._store = store
        self._pool = pool
        self._renderer = renderer
        self._sender = sender
        self._shop_name = shop_name
        self._links = links

    @activity.defn(name=SEND_EMAIL)
    async def send_recovery_email(self, request: EmailStepRequest) -> Activity:
        message_id = message_id_for(request.key, self._sender.domain)
        # Checked right before sending, in the transaction that claims the send: a buyer who
        # bought meanwhile gets no reminder.
        start = await self._store.begin_send(
            request.checkout_id, request.key, message_id, request.at
        )
        checkout = start.checkout
        if checkout is None:
            raise missing_checkout(request.checkout_id, PERMANENT_EMAIL_FAILURE)
        if checkout.status is CheckoutStatus.RECOVERED:
            return await self._not_sent(request, NotSentReason.RECOVERED)
        email = checkout.buyer_info.email
        if not email:
            return await self._not_sent(request, NotSentReason.NO_EMAIL)
        if start.claim is SendClaim.ALREADY_SENT:
            return await self._sent(request)
        if start.claim is SendClaim.IN_DOUBT:
            # An earlier attempt died between claiming and confirming; it may have delivered.
            # Never twice beats maybe once more, so the step ends here.
            logger.warning(
                "Step %s of %s: earlier send unconfirmed, not resending",
                request.step_index + 1,
                request.checkout_id,
            )
            return await self._not_sent(request, NotSentReason.DELIVERY_UNCONFIRMED)

        context = checkout_context(checkout, self._shop_name)
        if self._links is not None:
            # The buyer comes back through our signed redirect, which records the click. The
            # link depends only on the step and its due time, so a retry renders the same one.
            context["checkout_url"] = self._links.url(
                request.checkout_id, request.step_index + 1, request.at
            )
        rendered = self._renderer.render_email(
            request.step.template, checkout.buyer_language, context
        )
        message = build_message(
            rendered,
            sender=self._sender,
            to_address=email,
            to_name=context["buyer_name"] if isinstance(context["buyer_name"], str) else None,
            message_id=message_id,
            sent_at=request.at,
        )
        try:
            await self._pool.send(message, self._sender.address, email)
        except BaseException as err:
            # The relay did not take the message: the claim goes back, then either Temporal
            # retries with backoff (4xx, connection trouble) or the flow records why it gave up.
            await self._store.release_send(request.key)
            permanent = _permanent_failure(err)
            if permanent is not None:
                raise permanent from err
            raise
        return await self._sent(request)

    async def _sent(self, request: EmailStepRequest) -> Activity:
        entry = _entry(request, ActivityType.EMAIL_SENT)
        await self._store.confirm_send(request.key, request.checkout_id, entry)
        return entry

    async def _not_sent(self, request: EmailStepRequest, reason: NotSentReason) -> Activity:
        entry = _entry(request, ActivityType.EMAIL_NOT_SENT, reason)
        await self._store.record_activity(request.checkout_id, request.key, entry)
        return entry


def _entry(request: EmailStepRequest, kind: ActivityType, reason: str | None = None) -> Activity:
    return Activity(type=kind, created_date=request.at, step=request.step_index + 1, reason=reason)


def _permanent_failure(err: BaseException) -> ApplicationError | None:
    """A non-retryable error for an SMTP 5xx answer; None when trying again may work."""
    if isinstance(err, aiosmtplib.SMTPRecipientsRefused):
        codes = sorted({r.code for r in err.recipients})
        reason, message = NotSentReason.INVALID_ADDRESS, f"recipient refused with {codes}"
        permanent = any(code >= 500 for code in codes)
    elif isinstance(err, aiosmtplib.SMTPResponseException):
        reason, message = NotSentReason.SMTP_REJECTED, f"SMTP {err.code}"
        permanent = err.code >= 500
    else:
        return None
    if not permanent:
        return None
    return ApplicationError(message, str(reason), type=PERMANENT_EMAIL_FAILURE, non_retryable=True)
