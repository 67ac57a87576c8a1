"""What an operator asks of a checkout's flow: its state in Temporal, how it closed, and the next
step it will take. The CLI's `checkouts show` and the dashboard's checkout page both read it here,
so they always agree with each other and with the one step decision (domain.schedule.plan)."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from domain.checkout import AbandonedCheckout, CheckoutStatus
from domain.flow import RecoveryInput, RecoveryResult, workflow_id_for
from domain.policy import RecoveryPolicy
from domain.schedule import buyer_zone, plan
from service.flow_runs import RPC_TIMEOUT


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


@dataclass(frozen=True)
class FlowState:
    """The checkout's workflow as Temporal describes it."""

    workflow_id: str
    status: str
    """RUNNING, COMPLETED, CANCELED, TERMINATED, ...; NOT_FOUND when Temporal has no such flow
    (never started, or past retention); UNREACHABLE when Temporal could not be asked."""
    link: str
    start_time: datetime | None = None
    close_time: datetime | None = None
    flow_input: RecoveryInput | None = None
    problem: str | None = None
    result: RecoveryResult | None = None
    """A completed flow's result: why it closed and how many steps ran (when asked for)."""

    @property
    def may_run_more(self) -> bool:
        """Running, or unknown because Temporal could not be asked."""
        return self.status in ("RUNNING", "UNREACHABLE")

    def to_json_dict(self) -> dict[str, Any]:
        found = {
            "workflowId": self.workflow_id,
            "status": self.status,
            "startTime": _iso(self.start_time),
            "closeTime": _iso(self.close_time),
            "link": self.link,
        }
        return found | ({"error": self.problem} if self.problem else {})


@dataclass(frozen=True)
class NextStep:
    number: int
    """Counted from 1, as activity entries count steps."""
    action: str
    template: str
    due: datetime
    local_due: datetime
    """`due` in the buyer's zone (or the shop's, when the checkout names none)."""
    outcome: str
    """What it will do, as `policy check` says it: send, run, or skip: <reason>."""

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "action": self.action,
            "template": self.template,
            "dueDate": _iso(self.due),
            "outcome": self.outcome,
        }


def next_step(
    policy: RecoveryPolicy, checkout: AbandonedCheckout, abandoned_at: datetime
) -> NextStep | None:
    """The first policy step after the last one with an activity entry, as `policy check`
    plans it (domain.schedule.plan): its due time (a step already due at the report runs then;
    an email waits for the send window, in the buyer's zone) and what it will do (send, run, or
    skip for holdout, a stale or overdue report, failed conditions or consent). None when every
    step has run.

    A step that is retrying, deferred by the frequency cap, or re-timed by a cart update under
    `on_cart_update = "reset"` runs later (its timers are in `checkouts history`).
    """
    entries = checkout.activities
    done = max((entry.step for entry in entries if entry.step is not None), default=0)
    if done >= len(policy.steps):
        return None
    planned = plan(policy, checkout, abandoned_at, checkout.scheduled_at or abandoned_at)[done]
    local = planned.due.astimezone(buyer_zone(checkout, policy))
    return NextStep(
        planned.number, planned.action, planned.template, planned.due, local, planned.outcome
    )


def planned_next_step(
    checkout: AbandonedCheckout, flow: FlowState, configured: RecoveryPolicy | None
) -> NextStep | None:
    """The next step of a checkout whose flow may still run one: with the policy and clock the
    flow was started with (its input), else the configured policy from the checkout's
    createdDate. None when the checkout or its flow is done, or no policy is known."""
    if checkout.status is not CheckoutStatus.ABANDONED or checkout.stop_reason is not None:
        return None
    if not flow.may_run_more:
        return None
    policy = flow.flow_input.policy if flow.flow_input else configured
    if policy is None:
        return None
    abandoned_at = flow.flow_input.abandoned_at if flow.flow_input else checkout.created_date
    if abandoned_at is None:
        return None
    return next_step(policy, checkout, abandoned_at)


async def describe_flow(
    client: Client, checkout_id: str, link: str, *, with_result: bool = False
) -> FlowState:
    """Ask Temporal about the checkout's flow; never raises for a flow that is missing or a
    server that does not answer (the store's record is worth showing without it)."""
    workflow_id = workflow_id_for(checkout_id)
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
        flow_input = await read_flow_input(handle, client.data_converter)
        status = description.status.name if description.status else "UNKNOWN"
        result = None
        if with_result and status == "COMPLETED":
            result = await _result(client, workflow_id)
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return FlowState(workflow_id, "NOT_FOUND", link)
        return FlowState(workflow_id, "UNREACHABLE", link, problem=f"Temporal: {err.message}")
    return FlowState(
        workflow_id,
        status,
        link,
        start_time=description.start_time,
        close_time=description.close_time,
        flow_input=flow_input,
        result=result,
    )


async def _result(client: Client, workflow_id: str) -> RecoveryResult | None:
    handle = client.get_workflow_handle(workflow_id, result_type=RecoveryResult)
    try:
        found = await handle.result(rpc_timeout=RPC_TIMEOUT)
    except RPCError:
        raise
    except Exception:
        # A result an older flow wrote in another shape: the status still says how it closed.
        return None
    return found if isinstance(found, RecoveryResult) else None


async def read_flow_input(
    handle: WorkflowHandle[Any, Any], converter: DataConverter
) -> RecoveryInput | None:
    """What the flow was started with: the policy it keeps for its whole life, and its clock."""
    async for event in handle.fetch_history_events(page_size=1, rpc_timeout=RPC_TIMEOUT):
        payloads = event.workflow_execution_started_event_attributes.input
        try:
            decoded = await converter.decode_wrapper(payloads, [RecoveryInput])
        except Exception:
            # The input only refines the next step; the configured policy stands in when an
            # older or foreign input cannot be read.
            return None
        found = decoded[0] if decoded else None
        return found if isinstance(found, RecoveryInput) else None
    return None
