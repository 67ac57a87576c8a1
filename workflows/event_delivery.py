"""One workflow per event: deliver it to every subscriber that wants it, each with retries.

The workflow carries only ids; the event body (personal data) and the subscribers' secrets stay in
the store and are read by the delivery activity. Retries back off from 1 second to 10 minutes for
up to three days, so a subscriber that is down for a while still gets every event.
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from domain.events import DELIVER_EVENT, LIST_EVENT_SUBSCRIBERS, DeliveryRequest

EVENT_WORKFLOW_NAME = "EventDeliveryWorkflow"

DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
)
DELIVERY_WINDOW = timedelta(days=3)


@workflow.defn(name=EVENT_WORKFLOW_NAME)
class EventDeliveryWorkflow:
    @workflow.run
    async def run(self, event_id: str) -> int:
        """How many subscribers took the event (removed subscribers count as done, not taken)."""
        subscribers: list[str] = await workflow.execute_activity(
            LIST_EVENT_SUBSCRIBERS,
            event_id,
            result_type=list[str],
            start_to_close_timeout=timedelta(seconds=30),
        )
        outcomes = await asyncio.gather(
            *(
                workflow.execute_activity(
                    DELIVER_EVENT,
                    DeliveryRequest(event_id=event_id, subscription_id=subscriber),
                    result_type=bool,
                    start_to_close_timeout=timedelta(seconds=60),
                    schedule_to_close_timeout=DELIVERY_WINDOW,
                    retry_policy=DELIVERY_RETRY,
                )
                for subscriber in subscribers
            ),
            return_exceptions=True,
        )
        for subscriber, outcome in zip(subscribers, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                workflow.logger.warning(
                    "Event %s never reached subscription %s", event_id, subscriber
                )
        return sum(1 for outcome in outcomes if outcome is True)
