"""The SMS step: render, text once, record the outcome.

Idempotent as the email step is: a look first (claiming nothing), then a claim of the step's key
in the sent log with the re-check in its transaction (store.sms_sends), then the provider's HTTP
call, then the confirmation, which is the step's entry. A claim found without its entry was made
by an attempt that died around the call: the text may have gone, so it is never sent again.

Entries: NOTIFICATION_SENT / NOTIFICATION_NOT_SENT with `channel = "sms"`. The reference API has no
SMS entry type, and a text is a notification to the buyer; the channel tells it from a staff
webhook, so code written against the reference still reads the timeline. The phone number is in
no entry, log line, id or metric.
"""

import asyncio
import logging

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.email_compose import EmailComposer
from activities.message_context import checkout_context, formatting_locale
from activities.rendering import SMS_PART, TemplateRenderer, TemplateRenderError
from activities.shop_composers import ShopComposers
from activities.sms_provider import (
    SmsInDoubtError,
    SmsProvider,
    SmsRejectedError,
)
from activities.step_checkout import missing_checkout
from domain.activity import ActivityEntry, ActivityType, NotSentReason
from domain.checkout import AbandonedCheckout
from domain.links import LinkSigner
from domain.sms import e164, sms_refusal
from domain.steps import PERMANENT_SMS_FAILURE, SEND_SMS, SmsStepRequest
from store.sms_sends import SmsSends, SmsStart
from store.sql import SendClaim, SqlStore

logger = logging.getLogger(__name__)

SMS_CHANNEL = "sms"
"""The `channel` of an SMS step's entries (ActivityEntry.channel)."""


def render_sms(
    renderer: TemplateRenderer,
    template: str,
    checkout: AbandonedCheckout,
    shop_name: str,
    *,
    time_zone: str,
    checkout_url: str | None = None,
) -> str:
    """The text of an SMS step for `checkout`, by the one rule the step and `policy check` use:
    the email's context (money and dates in the buyer's locale), the template's language chosen
    as an email's is. `checkout_url`: the signed recovery link, when there is one."""
    language = renderer.resolve_language("sms", template, checkout.buyer_language)
    locale = formatting_locale(checkout.buyer_language, language)
    context = checkout_context(checkout, shop_name, locale=locale, time_zone=time_zone)
    if checkout_url is not None:
        context["checkout_url"] = checkout_url
    return renderer.render_in("sms", template, SMS_PART, language, context).strip()


class SmsActivities:
    def __init__(
        self,
        store: SqlStore,
        provider: SmsProvider | None,
        renderer: TemplateRenderer,
        shop_name: str,
        *,
        links: LinkSigner | None = None,
        composers: ShopComposers | None = None,
    ) -> None:
        """`provider` None: the worker has no SMS settings, and SMS steps record
        sms_not_configured. `composers`: the shops' own templates, names and links (the email
        step's cache); a shop that sets none texts with the deployment's (the arguments)."""
        self._store = store
        self._sends = SmsSends(store)
        self._provider = provider
        self._renderer = renderer
        self._shop_name = shop_name
        self._links = links
        self._composers = composers

    @activity.defn(name=SEND_SMS)
    async def send_recovery_sms(self, request: SmsStepRequest) -> ActivityEntry:
        window = request.frequency_cap.window
        seen = await self._sends.check(request.checkout_id, request.key, request.at, window)
        answer = await self._answer(request, seen)
        if answer is not None:
            return answer
        if self._provider is None:
            return await self._not_sent(request, NotSentReason.SMS_NOT_CONFIGURED)
        checkout = seen.checkout
        assert checkout is not None  # _answer covers a missing one
        number = e164(checkout.contact_details.phone or "")
        assert number is not None  # and one without a number
        shop = None if self._composers is None else await self._composers.for_shop(seen.shop_id)
        body = self._render(request, checkout, shop)
        claimed = await self._sends.claim(request.checkout_id, request.key, request.at, window)
        answer = await self._answer(request, claimed)
        if answer is not None:
            return answer
        try:
            await self._provider.send(number, body)
        except SmsInDoubtError as err:
            # The provider may have the text: the claim stays, so it is never sent twice.
            logger.warning("Step %s of %s: %s", request.step_index + 1, request.checkout_id, err)
            return await self._not_sent(request, NotSentReason.DELIVERY_UNCONFIRMED)
        except asyncio.CancelledError:
            # Cut off during the call (the attempt's timeout, a worker stopping): the text may
            # have gone, so the claim stays and the retry records delivery_unconfirmed.
            raise
        except BaseException as err:
            # The provider did not take the text: the claim goes back, then Temporal retries
            # (5xx, unreachable) or the flow records sms_rejected (4xx).
            await self._sends.release(request.key)
            if isinstance(err, SmsRejectedError):
                logger.warning(
                    "Step %s of %s: %s", request.step_index + 1, request.checkout_id, err
                )
                raise _permanent(str(err), NotSentReason.SMS_REJECTED) from err
            raise
        return await self._sent(request)

    async def _answer(self, request: SmsStepRequest, start: SmsStart) -> ActivityEntry | None:
        """The step's entry when the store's answer rules the text out or finds it done; None
        when it may go (after `claim`: it is claimed)."""
        if start.checkout is None:
            if not await self._store.is_erased(request.checkout_id):
                raise missing_checkout(request.checkout_id, PERMANENT_SMS_FAILURE)
            return await self._not_sent(request, NotSentReason.ERASED)
        refusal = _refusal(start)
        if refusal is not None:
            return await self._not_sent(request, refusal)
        if start.claim is SendClaim.ALREADY_SENT:
            return await self._sent(request)
        if start.claim is SendClaim.IN_DOUBT:
            logger.warning(
                "Step %s of %s: earlier text unconfirmed, not resending",
                request.step_index + 1,
                request.checkout_id,
            )
            return await self._not_sent(request, NotSentReason.DELIVERY_UNCONFIRMED)
        return None

    def _render(
        self, request: SmsStepRequest, checkout: AbandonedCheckout, shop: EmailComposer | None
    ) -> str:
        renderer, shop_name, links = (
            (self._renderer, self._shop_name, self._links)
            if shop is None
            else (shop.renderer, shop.shop_name, shop.links)
        )
        link = None
        if links is not None:
            # The same link for every retry: it depends on the step and its time only.
            link = links.url(request.checkout_id, request.step_index + 1, request.at)
        try:
            return render_sms(
                renderer,
                request.step.template,
                checkout,
                shop_name,
                time_zone=request.time_zone,
                checkout_url=link,
            )
        except TemplateRenderError as err:
            # Rendering is pure: every retry would fail the same way.
            logger.warning("SMS not sent, its template failed: %s", err)
            raise _permanent(f"template {err}", NotSentReason.TEMPLATE_ERROR) from err

    async def _sent(self, request: SmsStepRequest) -> ActivityEntry:
        entry = _entry(request, ActivityType.NOTIFICATION_SENT)
        # The entry is the confirmation of the claim (same key).
        await self._store.record_activity(request.checkout_id, request.key, entry)
        return entry

    async def _not_sent(self, request: SmsStepRequest, reason: NotSentReason) -> ActivityEntry:
        entry = _entry(request, ActivityType.NOTIFICATION_NOT_SENT, reason)
        await self._store.record_activity(request.checkout_id, request.key, entry)
        return entry


def _entry(
    request: SmsStepRequest, kind: ActivityType, reason: NotSentReason | None = None
) -> ActivityEntry:
    return ActivityEntry(
        type=kind,
        created_date=request.at,
        step=request.step_index + 1,
        reason=reason,
        channel=SMS_CHANNEL,
    )


def _refusal(start: SmsStart) -> NotSentReason | None:
    """Why the store's answer rules the text out, in the order a buyer would expect."""
    checkout = start.checkout
    assert checkout is not None
    halted = checkout.halted()
    if halted is not None:
        return halted
    # The flow decided on its snapshot; the store's is the newest (an update may have come).
    refused = sms_refusal(checkout)
    if refused is not None:
        return refused
    if start.stopped:
        return NotSentReason.SMS_STOP
    if start.capped:
        return NotSentReason.FREQUENCY_CAPPED
    return None


def _permanent(message: str, reason: NotSentReason) -> ApplicationError:
    return ApplicationError(message, str(reason), type=PERMANENT_SMS_FAILURE, non_retryable=True)
