"""Handing outbox events to Temporal: each becomes one delivery workflow, started once.

Runs in every worker. It polls, because events are written by other processes too (the API, the
CLI); the poll is one indexed query. Two workers dispatching the same event start one workflow
(its id is the event's), so running several is safe. An event no subscription wants at dispatch
time is marked dispatched without a workflow: most shops subscribe to few events or none, and a
workflow per checkout change would cost the cluster and the worker for nothing.
"""

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.events import EVENT_WORKFLOW_PREFIX
from store.outbox import Outbox, PendingEvent
from store.subscriptions import SubscriptionStore
from workflows.event_delivery import EVENT_WORKFLOW_NAME

logger = logging.getLogger(__name__)


class EventDispatcher:
    def __init__(
        self,
        client: Client,
        outbox: Outbox,
        subscriptions: SubscriptionStore,
        task_queue: str,
        interval_seconds: float = 0.5,
    ) -> None:
        self._client = client
        self._outbox = outbox
        self._subscriptions = subscriptions
        self._task_queue = task_queue
        self._interval = interval_seconds

    async def dispatch_pending(self) -> int:
        """Start a delivery workflow for each pending event; how many were handed over."""
        pending = await self._outbox.pending()
        if not pending:
            return 0
        subscribed = await self._subscriptions.list()
        wanted = [e for e in pending if any(s.wants(e.slug) for s in subscribed)]
        await asyncio.gather(*(self._start(event) for event in wanted))
        await self._outbox.mark_dispatched([e.id for e in pending], datetime.now(UTC))
        return len(pending)

    async def run(self) -> None:
        while True:
            try:
                if await self.dispatch_pending():
                    continue  # more may be waiting: no pause while there is a backlog
            except Exception:
                # The store or Temporal is away for a moment; the events wait in the outbox.
                logger.exception("Dispatching events failed; trying again")
            await asyncio.sleep(self._interval)

    async def _start(self, event: PendingEvent) -> None:
        # Already started means delivered already, by this or another worker.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self._client.start_workflow(
                EVENT_WORKFLOW_NAME,
                event.id,
                id=f"{EVENT_WORKFLOW_PREFIX}{event.id}",
                task_queue=self._task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
