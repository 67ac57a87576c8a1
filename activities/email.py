"""The email step: render, send once, record the outcome."""

import logging
from datetime import UTC, datetime
from email.message import Message

import aiosmtplib
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.email_compose import ComposeError, EmailComposer
from activities.email_message import Sender, message_id_for
from activities.heartbeat import heartbeating
from activities.rendering import TemplateRenderer
from activities.sent_copy import sent_copy
from activities.shop_composers import ShopComposers
from activities.smtp_pool import DeliveryInDoubtError, SmtpPool
from activities.step_checkout import missing_checkout
from domain.activity import ActivityType, NotSentReason
from domain.checkout import AbandonedCheckout
from domain.coupons import CouponProvider
from domain.links import LinkSigner
from domain.steps import PERMANENT_EMAIL_FAILURE, SEND_EMAIL, EmailStepRequest, EmailStepResult
from domain.variants import assign_variant
from store.sql import SendClaim, SendStart, SqlStore
from telemetry import metrics

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
        coupons: CouponProvider | None = None,
        unsubscribe_mailbox: str | None = None,
        composers: ShopComposers | None = None,
    ) -> None:
        """The deployment's sender, name, links and templates; `composers`: a shop's own, for
        the shops that set any (None: one shop, the deployment's)."""
        self._store = store
        self._pool = pool
        # What the step sends, composed by the rule the dashboard's preview uses too.
        self._composers = composers
        self.composer = EmailComposer(
            renderer,
            sender,
            shop_name,
            links=links,
            coupons=coupons,
            unsubscribe_mailbox=unsubscribe_mailbox,
        )

    @activity.defn(name=SEND_EMAIL)
    async def send_recovery_email(self, request: EmailStepRequest) -> EmailStepResult:
        async with heartbeating():
            return await self._send_step(request)

    async def _send_step(self, request: EmailStepRequest) -> EmailStepResult:
        cap = request.frequency_cap
        # A look first, claiming nothing: a checkout that may not be mailed costs no rendering
        # and no coupon.
        seen = await self._store.check_send(
            request.checkout_id, request.key, request.at, cap_window=cap.window
        )
        answer = await self._answer(request, seen)
        if answer is not None:
            return answer
        checkout = seen.checkout
        assert checkout is not None and checkout.buyer_info.email  # _answer covers both
        email = checkout.buyer_info.email
        # The checkout's shop's sender, name, links and templates (the deployment's by default).
        composer = await self._composer_of(seen.shop_id)
        message_id = message_id_for(request.key, composer.sender.id_domain)
        message = await self._compose(
            request, checkout, email, message_id, composer, shop_id=seen.shop_id
        )
        claimed: SendStart | None = None

        async def claim() -> bool:
            # The claim is the last thing before the relay accepts the message (the pool awaits
            # it with everything but the final dot sent), so a worker that dies holding a claim
            # has all but certainly delivered. Checked there too, in the claim's transaction: a
            # buyer who bought or unsubscribed meanwhile gets no reminder, and two checkouts of
            # one buyer cannot both pass the frequency cap.
            nonlocal claimed
            claimed = await self._store.begin_send(
                request.checkout_id, request.key, message_id, request.at, cap_window=cap.window
            )
            return claimed.claim is SendClaim.CLAIMED

        try:
            sent = await self._pool.send(
                message, composer.sender.address, email, commit=claim, dkim=composer.sender.dkim
            )
        except DeliveryInDoubtError as err:
            # The relay may have the email: the claim stays, so it is never sent twice.
            logger.warning("Step %s of %s: %s", request.step_index + 1, request.checkout_id, err)
            return await self._not_sent(request, NotSentReason.DELIVERY_UNCONFIRMED)
        except BaseException as err:
            # The relay did not take the message: a claim made goes back, then either Temporal
            # retries with backoff (4xx, connection trouble) or the flow records why it gave up.
            if claimed is not None and claimed.claim is SendClaim.CLAIMED:
                await self._store.release_send(request.key)
            permanent = _permanent_failure(err)
            if permanent is not None:
                raise permanent from err
            raise
        if not sent:
            assert claimed is not None  # only the claim abandons a message
            refused = await self._answer(request, claimed)
            assert refused is not None  # begin_send found a reason not to send
            return refused
        # Only a send the relay just took counts (a retry that finds it confirmed does not).
        # Lateness counts from the flow's clock when it ran the step (`at`, the same on every
        # retry): it includes queueing, retries and SMTP, not a worker that was down when the
        # step's timer fired (the request does not carry the step's due time).
        metrics.email_sent(request.step_index + 1, request.step.template)
        metrics.send_lateness(request.step_index + 1, datetime.now(UTC) - request.at)
        return await self._sent(request, message)

    async def _composer_of(self, shop_id: str) -> EmailComposer:
        found = None if self._composers is None else await self._composers.for_shop(shop_id)
        return found or self.composer

    async def _answer(self, request: EmailStepRequest, start: SendStart) -> EmailStepResult | None:
        """The step's result when the store's answer rules the send out or finds it done;
        None when the email may go."""
        if start.checkout is None:
            raise missing_checkout(request.checkout_id, PERMANENT_EMAIL_FAILURE)
        if start.capped_until is not None and request.frequency_cap.when_capped == "defer":
            # Nothing recorded: the flow waits and runs the step again at the end of the window.
            deferred = _entry(request, ActivityType.EMAIL_NOT_SENT, NotSentReason.FREQUENCY_CAPPED)
            return deferred.model_copy(update={"deferred_until": start.capped_until})
        refusal = _refusal(start)
        if refusal is not None:
            return await self._not_sent(request, refusal)
        if start.claim is SendClaim.ALREADY_SENT:
            return await self._sent(request)
        if start.claim is SendClaim.IN_DOUBT:
            # An earlier attempt claimed, with the whole message at the relay, and died before
            # the relay's answer: it has almost certainly delivered. Never twice beats maybe
            # once more, so the step ends here.
            logger.warning(
                "Step %s of %s: earlier send unconfirmed, not resending",
                request.step_index + 1,
                request.checkout_id,
            )
            return await self._not_sent(request, NotSentReason.DELIVERY_UNCONFIRMED)
        return None

    async def _compose(
        self,
        request: EmailStepRequest,
        checkout: AbandonedCheckout,
        email: str,
        message_id: str,
        composer: EmailComposer | None = None,
        *,
        shop_id: str,
    ) -> Message:
        try:
            return await (composer or self.composer).compose(
                request, checkout, email, message_id, shop_id=shop_id
            )
        except ComposeError as err:
            raise _template_failure(str(err)) from err

    async def _sent(
        self, request: EmailStepRequest, message: Message | None = None
    ) -> EmailStepResult:
        """`message` is the email the relay just took; None when an earlier attempt sent it."""
        entry = _entry(request, ActivityType.EMAIL_SENT)
        copy = None
        if message is not None and self._store.keeps_sent_emails:
            # Read back out of the message only when the store keeps copies.
            copy = sent_copy(message)
        await self._store.confirm_send(request.key, request.checkout_id, entry, copy=copy)
        return entry

    async def _not_sent(self, request: EmailStepRequest, reason: NotSentReason) -> EmailStepResult:
        entry = _entry(request, ActivityType.EMAIL_NOT_SENT, reason)
        await self._store.record_activity(request.checkout_id, request.key, entry)
        metrics.email_not_sent(request.step_index + 1, reason)
        return entry


def _entry(
    request: EmailStepRequest, kind: ActivityType, reason: str | None = None
) -> EmailStepResult:
    # The variant the composer chose, by the same rule: what the stats count the send under.
    variant = assign_variant(request.step, request.checkout_id, request.step_index)
    return EmailStepResult(
        type=kind,
        created_date=request.at,
        step=request.step_index + 1,
        reason=reason,
        consent=request.consent,
        variant=variant.name if variant is not None else None,
    )


def _refusal(start: SendStart) -> NotSentReason | None:
    """Why the store's answer rules the send out, in the order a buyer would expect."""
    checkout = start.checkout
    assert checkout is not None
    halted = checkout.halted()
    if halted is not None:
        return halted
    if not checkout.buyer_info.email:
        return NotSentReason.NO_EMAIL
    if start.suppressed_because is not None:
        return _suppression_reason(start.suppressed_because)
    if start.capped_until is not None:
        return NotSentReason.FREQUENCY_CAPPED
    return None


def _suppression_reason(reason: str) -> NotSentReason:
    """The entry's reason for a suppressed address: what the relay reported (store.feedback), else
    an unsubscribe (also every suppression from before reasons were kept)."""
    if reason in (NotSentReason.BOUNCED, NotSentReason.COMPLAINED):
        return NotSentReason(reason)
    return NotSentReason.UNSUBSCRIBED


def _template_failure(message: str) -> ApplicationError:
    logger.warning("Email not sent, its template failed: %s", message)
    return ApplicationError(
        message,
        str(NotSentReason.TEMPLATE_ERROR),
        type=PERMANENT_EMAIL_FAILURE,
        non_retryable=True,
    )


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
