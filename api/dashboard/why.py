"""The checkout page's "why": where the flow is (running, waiting for the hand-off, or closed, and
how it closed), the next step it will take and when, and the workflow history's summary.

The next step and the flow's state come from service.flow_view, as `checkouts show` prints them;
the history rows from service.history_summary, as `checkouts history` prints them (no payloads).
Temporal down or not configured: the page still renders, and says it could not ask."""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.service import RPCError

from domain.checkout import AbandonedCheckout, CheckoutStatus, FlowState
from domain.flow import workflow_id_for
from domain.policy import RecoveryPolicy
from domain.schedule import buyer_zone
from service import flow_view
from service.flow_runs import fetch_flow_history
from service.flow_view import NextStep, describe_flow, planned_next_step
from service.history_summary import HistoryRow, decode_failure_messages, summarise_history

logger = logging.getLogger(__name__)

MAX_HISTORY_ROWS = 500
"""A flow's summary rarely passes a few dozen rows; beyond this the page shows the newest."""

_CLOSED = {
    "COMPLETED": "completed",
    "CANCELED": "cancelled in Temporal",
    "TERMINATED": "terminated",
    "FAILED": "failed",
    "TIMED_OUT": "timed out",
    "CONTINUED_AS_NEW": "continued as new",
}


@dataclass(frozen=True)
class Why:
    state: str
    """"running", "pending hand-off", "closed", "not started" or "unknown"."""
    state_detail: str
    """The state in words: how the flow closed, what the hand-off waits for, ..."""
    temporal_status: str
    """Temporal's status for the flow (RUNNING, COMPLETED, ...; NOT_FOUND; UNREACHABLE)."""
    problem: str | None
    """Why Temporal could not be asked, when it could not."""
    next_step: NextStep | None
    next_due_local: str
    """The next step's due time in the buyer's zone, with the zone's name."""
    next_due_now: bool
    history: list[HistoryRow] | None
    """None when the history could not be read (see history_problem)."""
    history_problem: str | None


async def why_view(
    client: Client | None,
    checkout_id: str,
    checkout: AbandonedCheckout,
    *,
    link: str,
    configured: RecoveryPolicy | None,
    now: datetime | None = None,
) -> Why:
    flow = await _flow(client, checkout_id, link)
    upcoming = planned_next_step(checkout, flow, configured)
    policy = flow.flow_input.policy if flow.flow_input else configured
    local = ""
    if upcoming is not None and policy is not None:
        zone = buyer_zone(checkout, policy)
        local = f"{upcoming.local_due:%Y-%m-%d %H:%M:%S} {zone.key}"
    history, history_problem = await _history(client, flow)
    state, detail = _state(checkout, flow)
    return Why(
        state=state,
        state_detail=detail,
        temporal_status=flow.status,
        problem=flow.problem,
        next_step=upcoming,
        next_due_local=local,
        next_due_now=upcoming is not None and upcoming.due <= (now or datetime.now(UTC)),
        history=history,
        history_problem=history_problem,
    )


async def _flow(client: Client | None, checkout_id: str, link: str) -> flow_view.FlowState:
    workflow_id = workflow_id_for(checkout_id)
    if client is None:
        problem = "this service has no Temporal client: the flow's state is unknown"
        return flow_view.FlowState(workflow_id, "UNREACHABLE", link, problem=problem)
    try:
        return await describe_flow(client, checkout_id, link, with_result=True)
    except Exception as err:  # a connection that broke mid-call, say: the page still renders
        logger.warning("Dashboard could not describe workflow %s: %s", workflow_id, type(err))
        problem = f"Temporal did not answer ({type(err).__name__})"
        return flow_view.FlowState(workflow_id, "UNREACHABLE", link, problem=problem)


async def _history(
    client: Client | None, flow: flow_view.FlowState
) -> tuple[list[HistoryRow] | None, str | None]:
    if client is None or flow.status == "UNREACHABLE":
        return None, "Temporal could not be asked for the flow's history"
    if flow.status == "NOT_FOUND":
        return None, "Temporal holds no history: never started, or past its retention"
    try:
        events = await fetch_flow_history(client, flow.workflow_id)
        await decode_failure_messages(events, client.data_converter)
    except RPCError as err:
        return None, f"Temporal: {err.message}"
    except Exception as err:
        logger.warning("Dashboard could not read history of %s: %s", flow.workflow_id, type(err))
        return None, f"the history could not be read ({type(err).__name__})"
    return summarise_history(events)[-MAX_HISTORY_ROWS:], None


def _state(checkout: AbandonedCheckout, flow: flow_view.FlowState) -> tuple[str, str]:
    if checkout.flow_state is FlowState.PENDING:
        return "pending hand-off", (
            "a start or signal is written in the store and waits for Temporal; "
            "the hand-off delivers it"
        )
    if flow.status == "RUNNING":
        if checkout.stop_reason is not None:
            return "running", f"stopped ({checkout.stop_reason.value}): no further step runs"
        return "running", "the flow waits for its next step or a signal"
    if flow.status == "UNREACHABLE":
        return "unknown", flow.problem or "Temporal could not be asked"
    if flow.status == "NOT_FOUND":
        return "not started", "Temporal has no such flow: never started, or past its retention"
    how = [_CLOSED.get(flow.status, flow.status.lower())]
    if flow.result is not None:
        how.append(f"closed because {flow.result.closed_because}")
        how.append(f"{flow.result.steps_run} step(s) ran")
    if checkout.stop_reason is not None:
        how.append(f"stop reason {checkout.stop_reason.value}")
    if checkout.status is CheckoutStatus.RECOVERED:
        how.append("the checkout was recovered")
    return "closed", ", ".join(how)
