"""The reconciler: finds where the store and Temporal disagree about a checkout's flow, and
repairs it through the hand-off.

What it looks for:

- commands stuck in the outbox (older than a minute): delivered again, and shown;
- an open checkout (ABANDONED, not stopped, not erased) with no flow in Temporal: started late
  when its policy's steps and listen window have not all passed yet, otherwise closed with
  stopReason window_elapsed;
- a flow still running for a checkout the store says is recovered, stopped or erased: it gets
  the command it missed (recovered, cancel, buyer_purchased, delete).

Checkouts changed within the last minute are left alone: their own commands are still on their
way, and Temporal's visibility lags its writes by a moment. A flow seen closed is marked in the
store, so each checkout costs Temporal one describe in its life.
"""

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from domain.checkout import CheckoutStatus, StopReason
from domain.flow import (
    BUYER_PURCHASED_SIGNAL,
    CANCEL_SIGNAL,
    RECOVERED_SIGNAL,
    WORKFLOW_ID_PREFIX,
    WORKFLOW_NAME,
    RecoveredSignal,
    workflow_id_for,
)
from domain.policy import RecoveryPolicy
from service.checkouts import flow_start
from service.handoff import Handoff
from store.flow_commands import DELETE_COMMAND, NewCommand, signal_command
from store.flow_records import FlowRecord, mark_flows_closed, open_records, records_of
from store.sql import SqlStore

logger = logging.getLogger(__name__)

SETTLE = timedelta(minutes=1)


@dataclass(frozen=True)
class Finding:
    checkout_id: str
    problem: str
    """command_stuck, flow_missing, or flow_running_after_<recovered|cancelled|...|erased>."""
    action: str
    """What was done: delivered, started, closed, told, or (dry run) what would be."""
    detail: str = ""


@dataclass
class ReconcileReport:
    dry_run: bool
    checked: int = 0
    """Open checkouts compared with Temporal."""
    running_flows: int = 0
    findings: list[Finding] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, object]:
        return {
            "dryRun": self.dry_run,
            "checked": self.checked,
            "runningFlows": self.running_flows,
            "findings": [asdict(f) for f in self.findings],
        }


@dataclass
class _Round:
    """One reconciliation's facts, gathered at its start."""

    report: ReconcileReport
    now: datetime
    settle: timedelta
    running: set[str] = field(default_factory=set)
    """Checkouts whose flows Temporal lists as running."""
    waiting: set[str] = field(default_factory=set)
    """Checkouts with commands still in the outbox: the hand-off is on them."""

    @property
    def settled(self) -> datetime:
        return self.now - self.settle

    @property
    def dry_run(self) -> bool:
        return self.report.dry_run


class Reconciler:
    def __init__(
        self,
        client: Client,
        store: SqlStore,
        handoff: Handoff,
        policy: RecoveryPolicy,
        *,
        search_attributes: bool = False,
        settle: timedelta = SETTLE,
    ) -> None:
        """`policy`: the one a checkout found without a flow is started with (the store keeps
        no policy per checkout). `settle`: how long a change is left to its own commands."""
        self._client = client
        self._store = store
        self._handoff = handoff
        self._policy = policy
        self._search_attributes = search_attributes
        self._settle = settle

    async def reconcile(self, *, dry_run: bool = False) -> ReconcileReport:
        facts = _Round(ReconcileReport(dry_run=dry_run), datetime.now(UTC), self._settle)
        await self._stuck_commands(facts)
        facts.waiting = await self._store.commands.checkout_ids()
        facts.running = await self._running_flows()
        facts.report.running_flows = len(facts.running)
        await self._open_without_flow(facts)
        await self._running_but_done(facts)
        return facts.report

    async def _stuck_commands(self, facts: _Round) -> None:
        stuck = await self._store.commands.pending(limit=10_000, created_before=facts.settled)
        if not stuck:
            return
        failed: set[int] = set()
        if not facts.dry_run:
            failed = {c.seq for c in (await self._handoff.deliver(stuck)).failed}
        for command in stuck:
            action = (
                "would deliver"
                if facts.dry_run
                else "still undelivered"
                if command.seq in failed
                else "delivered"
            )
            detail = f"{command.kind} {command.name}, {command.attempts} attempt(s)"
            if command.last_error:
                detail += f", last error: {command.last_error}"
            facts.report.findings.append(
                Finding(command.checkout_id, "command_stuck", action, detail)
            )

    async def _running_flows(self) -> set[str]:
        query = f"WorkflowType = '{WORKFLOW_NAME}' AND ExecutionStatus = 'Running'"
        found: set[str] = set()
        async for execution in self._client.list_workflows(query, page_size=1000):
            if execution.id.startswith(WORKFLOW_ID_PREFIX):
                found.add(execution.id.removeprefix(WORKFLOW_ID_PREFIX))
        return found

    async def _open_without_flow(self, facts: _Round) -> None:
        after = ""
        while page := await open_records(self._store.engine, facts.settled, after):
            after = page[-1].checkout_id
            closed: list[str] = []
            for record in page:
                facts.report.checked += 1
                if record.checkout_id in facts.running or record.checkout_id in facts.waiting:
                    continue
                status = await self._flow_status(record.checkout_id)
                if status is WorkflowExecutionStatus.RUNNING:
                    continue  # visibility had not caught up
                if status is not None:
                    closed.append(record.checkout_id)
                    continue
                facts.report.findings.append(await self._repair_missing(record, facts))
            if closed and not facts.dry_run:
                await mark_flows_closed(self._store.engine, closed, facts.now)

    async def _repair_missing(self, record: FlowRecord, facts: _Round) -> Finding:
        now, dry_run = facts.now, facts.dry_run
        last_step = self._policy.steps[-1].delay
        ends = record.created_date + last_step + self._policy.listen_window
        checkout_id = record.checkout_id
        if ends <= now:
            if not dry_run:
                await self._store.close_without_flow(checkout_id, now)
            action = "would close" if dry_run else "closed"
            detail = f"its policy window ended {ends.isoformat()}: stopReason window_elapsed"
            return Finding(checkout_id, "flow_missing", action, detail)
        if not dry_run:
            await self._store.enqueue(checkout_id, await self._late_start(checkout_id))
            await self._handoff.deliver_now([checkout_id])
        action = "would start" if dry_run else "started"
        return Finding(checkout_id, "flow_missing", action, f"policy {self._policy.name}")

    async def _late_start(self, checkout_id: str) -> NewCommand:
        checkout = await self._store.get(checkout_id)
        assert checkout is not None and checkout.created_date is not None
        return flow_start(
            checkout,
            self._policy,
            checkout.scheduled_at or checkout.created_date,
            publish_search_attributes=self._search_attributes,
        )

    async def _running_but_done(self, facts: _Round) -> None:
        candidates = facts.running - facts.waiting
        records = await records_of(self._store.engine, candidates)
        told: list[str] = []
        for checkout_id in sorted(candidates):
            record = records.get(checkout_id)
            if record is None or record.open or record.updated_date >= facts.settled:
                continue
            problem, command = _missed_command(record)
            if not facts.dry_run:
                await self._store.enqueue(checkout_id, command)
                told.append(checkout_id)
            action = "would tell" if facts.dry_run else "told"
            facts.report.findings.append(Finding(checkout_id, problem, action, command.name))
        if told:
            await self._handoff.deliver_now(told)

    async def _flow_status(self, checkout_id: str) -> WorkflowExecutionStatus | None:
        """The flow's status, None when Temporal has no such flow."""
        try:
            described = await self._client.get_workflow_handle(
                workflow_id_for(checkout_id)
            ).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return None
            raise
        return described.status


def _missed_command(record: FlowRecord) -> tuple[str, NewCommand]:
    """The command a running flow must have missed, given what the store says."""
    if record.erased:
        return "flow_running_after_erased", DELETE_COMMAND
    if record.status is CheckoutStatus.RECOVERED:
        signal = RecoveredSignal(order_id=record.order_id, recovered_at=record.recovered_date)
        return "flow_running_after_recovered", signal_command(RECOVERED_SIGNAL, signal)
    if record.stop_reason is StopReason.BUYER_PURCHASED:
        return "flow_running_after_buyer_purchased", signal_command(BUYER_PURCHASED_SIGNAL)
    return f"flow_running_after_{record.stop_reason}", signal_command(CANCEL_SIGNAL)
