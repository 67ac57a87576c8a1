"""Delivering events to subscribers: signed HTTP POSTs, retried by Temporal until taken."""

import logging
import time

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.events import DELIVER_EVENT, LIST_EVENT_SUBSCRIBERS, DeliveryRequest
from domain.webhook_signing import webhook_headers
from store.outbox import Outbox
from store.subscriptions import SubscriptionStore
from telemetry import metrics

logger = logging.getLogger(__name__)


class WebhookActivities:
    def __init__(
        self, outbox: Outbox, subscriptions: SubscriptionStore, http: httpx.AsyncClient
    ) -> None:
        self._outbox = outbox
        self._subscriptions = subscriptions
        self._http = http

    @activity.defn(name=LIST_EVENT_SUBSCRIBERS)
    async def list_event_subscribers(self, event_id: str) -> list[str]:
        envelope = await self._outbox.envelope(event_id)
        if envelope is None:
            return []
        # Only the event's shop's subscriptions: a shop never receives another's events.
        wanting = await self._subscriptions.for_event(event_id)
        return [s.id for s in wanting if s.wants(envelope.slug)]

    @activity.defn(name=DELIVER_EVENT)
    async def deliver_event(self, request: DeliveryRequest) -> bool:
        """True once the subscriber answered 2xx; False when it or the event is gone."""
        envelope = await self._outbox.envelope(request.event_id)
        target = await self._subscriptions.target(request.subscription_id)
        if envelope is None or target is None:
            metrics.webhook_delivery("dropped")
            return False
        url, secret = target
        body = envelope.model_dump_json(by_alias=True).encode()
        # The id is the event's: a redelivery carries the same webhook-id, for de-duplication.
        headers = webhook_headers(secret, envelope.id, int(time.time()), body)
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as err:
            metrics.webhook_delivery("unreachable")
            raise ApplicationError(
                f"subscriber unreachable: {type(err).__name__}", type="SubscriberUnreachable"
            ) from None
        metrics.webhook_delivery(
            "delivered" if response.is_success else "refused", response.status_code
        )
        if not response.is_success:
            raise ApplicationError(
                f"subscriber answered {response.status_code}", type="SubscriberRefused"
            )
        return True
