"""The notification step: a signed JSON POST to the URL the policy names (Slack, a CRM, ...)."""

import json
import logging

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.message_context import checkout_context
from activities.rendering import TemplateRenderer, TemplateRenderError
from activities.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign_body
from activities.step_checkout import staff_step_checkout
from domain.activity import ActivityEntry, ActivityType
from domain.steps import SEND_NOTIFICATION, NotificationStepRequest
from store.sql import SqlStore
from telemetry import metrics

logger = logging.getLogger(__name__)

# Statuses worth trying again: the receiver is busy or briefly broken. Any other 4xx means the
# request itself is wrong and will stay wrong.
_RETRYABLE_CLIENT_ERRORS = {408, 409, 425, 429}


class NotificationActivities:
    def __init__(
        self,
        store: SqlStore,
        http: httpx.AsyncClient,
        renderer: TemplateRenderer,
        shop_name: str,
        signing_secret: str | None,
    ) -> None:
        self._store = store
        self._http = http
        self._renderer = renderer
        self._shop_name = shop_name
        self._signing_secret = signing_secret

    @activity.defn(name=SEND_NOTIFICATION)
    async def send_staff_notification(self, request: NotificationStepRequest) -> ActivityEntry:
        checkout = await staff_step_checkout(
            self._store, request, ActivityType.NOTIFICATION_NOT_SENT
        )
        if isinstance(checkout, ActivityEntry):
            metrics.notification_step(checkout.reason)
            return checkout
        context = checkout_context(checkout, self._shop_name)
        try:
            text = self._renderer.render_line(
                "notification", request.step.template, checkout.buyer_language, context
            )
        except TemplateRenderError as err:
            # Rendering is pure: every retry would fail the same way.
            raise ApplicationError(
                f"template {err}", type="TemplateError", non_retryable=True
            ) from err
        body = json.dumps(
            {
                "type": "abandoned_checkout.step",
                "idempotencyKey": request.key,
                "step": request.step_index + 1,
                "text": text,
                "abandonedCheckout": {
                    "id": checkout.id,
                    "status": checkout.status,
                    "currency": checkout.currency,
                    "totalPrice": checkout.total_price.to_json_dict(),
                    "itemsCount": context["items_count"],
                    "checkoutUrl": checkout.checkout_url,
                },
            },
            separators=(",", ":"),
        ).encode()
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: request.key}
        if self._signing_secret:
            headers[SIGNATURE_HEADER] = sign_body(self._signing_secret, body)
        response = await self._http.post(request.step.url, content=body, headers=headers)
        if response.status_code >= 400:
            retryable = (
                response.status_code >= 500 or response.status_code in _RETRYABLE_CLIENT_ERRORS
            )
            raise ApplicationError(
                f"notification endpoint answered {response.status_code}",
                type="NotificationRejected",
                non_retryable=not retryable,
            )
        entry = ActivityEntry(
            type=ActivityType.NOTIFICATION_SENT,
            created_date=request.at,
            step=request.step_index + 1,
        )
        await self._store.record_activity(request.checkout_id, request.key, entry)
        metrics.notification_step()
        return entry
