"""The hand-off: delivering the store's commands to Temporal until Temporal confirms them.

Two deliverers share the work, both idempotent:

- the process that wrote a command (the API, the CLI) delivers it at once, so a report usually
  answers with its flow already started, as it did before the outbox existed;
- every worker runs `Handoff.run`, which delivers whatever is left: the writer died after its
  commit, Temporal was down, or the call timed out. Workers are the one part every deployment
  runs (no flow moves without them), and they already poll the store for events.

A checkout's commands go in order (its start before its signals); different checkouts go
concurrently. A second start attaches to the running flow or is refused by a closed one; a second
signal changes nothing in the flow (flags, and cart updates the flow has seen are ignored); a
signal or delete for a flow that no longer exists has nothing left to do. So delivering a command
twice, by two deliverers or after a crash between Temporal's answer and the store's confirmation,
is harmless.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.flow import (
    SIGNAL_ARGUMENTS,
    STATUS_ATTRIBUTE,
    STEP_ATTRIBUTE,
    WORKFLOW_NAME,
    RecoveryInput,
    workflow_id_for,
)
from service.flow_runs import delete_every_run
from store.coalescing import Coalescer
from store.flow_commands import Backlog, CommandKind, CommandQueue, FlowCommand
from telemetry import metrics
from telemetry.log_context import checkout_logged

logger = logging.getLogger(__name__)

RPC_TIMEOUT = timedelta(seconds=5)
"""One Temporal call; past it the command stays in the outbox for the next round."""
INLINE_TIMEOUT_SECONDS = 3.0
"""How long a writer waits for Temporal before answering that the flow is PENDING."""
UNAVAILABLE_BACKOFF_SECONDS = 5.0
"""After a failed inline delivery, writers leave delivery to the workers for this long, so that
reports during a Temporal outage answer at once instead of each waiting for a timeout."""
GRACE = timedelta(seconds=1)
"""The workers' loop leaves commands this young to their writers."""
_CONCURRENCY = 64
BACKLOG_GAUGE_SECONDS = 5.0
"""How often the workers' loop measures the outbox for the backlog gauges (a count and a min
over a table that is near-empty when all is well)."""


@dataclass
class Delivery:
    """What one round of delivery did."""

    delivered: list[FlowCommand] = field(default_factory=list)
    failed: list[FlowCommand] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failed


class Handoff:
    def __init__(self, client: Client, queue: CommandQueue, task_queue: str) -> None:
        self._client = client
        self._queue = queue
        self._task_queue = task_queue
        self._slots = asyncio.Semaphore(_CONCURRENCY)
        self._unavailable_until = 0.0
        self._confirmations: Coalescer[list[FlowCommand], None] = Coalescer(self._confirm_batch)
        self._confirming: set[asyncio.Task[None]] = set()

    async def deliver(
        self, commands: Sequence[FlowCommand], *, confirm_later: bool = False
    ) -> Delivery:
        """Deliver `commands` (in outbox order), then confirm what Temporal took and count an
        attempt on the rest. `confirm_later`: the confirmation joins the next background batch
        instead of being awaited (a crash before it is written only means a harmless second
        delivery by the workers)."""
        groups: dict[str, list[FlowCommand]] = {}
        for command in commands:
            groups.setdefault(command.checkout_id, []).append(command)
        outcome = Delivery()
        for delivered, failed, error in await asyncio.gather(
            *(self._deliver_in_turn(group) for group in groups.values())
        ):
            outcome.delivered += delivered
            outcome.failed += failed
            if error is not None:
                outcome.errors.append(error)
        if confirm_later:
            self._confirm_soon(outcome.delivered)
        else:
            await self._queue.confirm(outcome.delivered)
        if outcome.failed:
            await self._queue.note_failure(outcome.failed, outcome.errors[0])
        return outcome

    async def deliver_now(
        self, checkout_ids: Collection[str], *, written: Sequence[FlowCommand] | None = None
    ) -> bool:
        """The writer's delivery: every pending command of these checkouts, within a short
        timeout. True when all reached Temporal; False leaves them to the workers.

        `written`: the writer knows these are all the checkouts' pending commands (a first
        report's start), which spares reading them back."""
        if not checkout_ids or time.monotonic() < self._unavailable_until:
            return False
        try:
            async with asyncio.timeout(INLINE_TIMEOUT_SECONDS):
                pending = written
                if pending is None:
                    pending = await self._queue.pending(checkout_ids=checkout_ids)
                delivered = (await self.deliver(pending, confirm_later=True)).complete
        except TimeoutError:
            delivered = False
        if not delivered:
            self._unavailable_until = time.monotonic() + UNAVAILABLE_BACKOFF_SECONDS
            logger.info("Temporal did not confirm in time; the workers' hand-off will deliver")
        return delivered

    async def deliver_pending(self, limit: int = 500) -> Delivery:
        """One round of the workers' loop: the oldest commands past the grace period."""
        pending = await self._queue.pending(limit=limit, created_before=datetime.now(UTC) - GRACE)
        return await self.deliver(pending)

    def _confirm_soon(self, delivered: list[FlowCommand]) -> None:
        # Confirmations that arrive while one batch is being written wait for the next: under
        # load, a hundred deliveries cost a few writes instead of a hundred.
        if not delivered:
            return
        task = asyncio.create_task(self._confirm_quietly(delivered))
        self._confirming.add(task)
        task.add_done_callback(self._confirming.discard)

    async def _confirm_quietly(self, delivered: list[FlowCommand]) -> None:
        try:
            await self._confirmations.run(delivered)
        except Exception:
            # Still in the outbox: the workers deliver them again, which changes nothing.
            logger.warning(
                "Recording %d delivered command(s) failed", len(delivered), exc_info=True
            )

    async def _confirm_batch(self, batches: list[list[FlowCommand]]) -> list[None]:
        await self._queue.confirm([command for batch in batches for command in batch])
        return [None] * len(batches)

    async def backlog(self) -> Backlog:
        """What waits in the outbox; published as the hand-off backlog gauges too."""
        backlog = await self._queue.backlog()
        metrics.handoff_backlog(backlog.count, backlog.oldest, datetime.now(UTC))
        return backlog

    async def flush(self) -> None:
        """Wait until every delivery made so far is recorded (before a process exits)."""
        if self._confirming:
            await asyncio.gather(*self._confirming)

    async def run(self, interval_seconds: float = 1.0) -> None:
        """Deliver pending commands for ever; a failing store or Temporal is logged once per
        outage, and tried again every `interval_seconds`."""
        failing = False
        measure_at = 0.0
        while True:
            try:
                outcome = await self.deliver_pending()
                problem = outcome.errors[0] if outcome.errors else None
                if time.monotonic() >= measure_at:
                    measure_at = time.monotonic() + BACKLOG_GAUGE_SECONDS
                    await self.backlog()
            except Exception as err:  # the store is away; commands wait in it
                outcome, problem = Delivery(), f"{type(err).__name__}: {err}"
            if problem is not None and not failing:
                logger.warning("Hand-off to Temporal failing, will keep trying: %s", problem)
            elif problem is None and failing:
                logger.warning("Hand-off to Temporal recovered")
            failing = problem is not None
            if outcome.delivered and not failing:
                continue  # a backlog: no pause until it is gone
            await asyncio.sleep(interval_seconds)

    async def _deliver_in_turn(
        self, commands: list[FlowCommand]
    ) -> tuple[list[FlowCommand], list[FlowCommand], str | None]:
        async with self._slots:
            for index, command in enumerate(commands):
                try:
                    with checkout_logged(command.checkout_id):
                        await self._send(command)
                except Exception as err:
                    # The rest of this checkout's commands wait: order matters within one flow.
                    return commands[:index], commands[index:], f"{type(err).__name__}: {err}"
        return commands, [], None

    async def _send(self, command: FlowCommand) -> None:
        workflow_id = workflow_id_for(command.checkout_id)
        try:
            if command.kind is CommandKind.START:
                await self._start(workflow_id, command)
            elif command.kind is CommandKind.SIGNAL:
                argument_type = SIGNAL_ARGUMENTS[command.name]
                handle = self._client.get_workflow_handle(workflow_id)
                if argument_type is None or command.payload is None:
                    await handle.signal(command.name, rpc_timeout=RPC_TIMEOUT)
                else:
                    argument = argument_type.model_validate_json(command.payload)
                    await handle.signal(command.name, argument, rpc_timeout=RPC_TIMEOUT)
            else:
                # Every run: a flow that continued as new keeps the checkout in each older run.
                await delete_every_run(self._client, workflow_id)
        except RPCError as err:
            # The flow has closed (or was deleted): it takes no signal, and nothing is left
            # to delete. The store already holds the change.
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            logger.debug(
                "Flow %s is gone; %s %s has nothing left to do",
                workflow_id,
                command.kind,
                command.name,
            )

    async def _start(self, workflow_id: str, command: FlowCommand) -> None:
        assert command.payload is not None
        flow = RecoveryInput.model_validate_json(command.payload)
        attributes = (
            TypedSearchAttributes(
                [
                    SearchAttributePair(STATUS_ATTRIBUTE, "ABANDONED"),
                    SearchAttributePair(STEP_ATTRIBUTE, 0),
                ]
            )
            if flow.publish_search_attributes
            else None
        )
        # Closed already: refused, and the checkout keeps its one and only flow.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self._client.start_workflow(
                WORKFLOW_NAME,
                flow,
                id=workflow_id,
                task_queue=self._task_queue,
                # Running: attach to it. Closed: refuse. Either way one flow per checkout, ever.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=attributes,
                rpc_timeout=RPC_TIMEOUT,
            )
