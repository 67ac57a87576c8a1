"""The runs of one flow: a flow that continued as new has one run per continuation.

Temporal addresses a workflow id without a run id as its latest run. Each run's first event names
the run it continued, so the chain is walked from the latest back to the first. Erasing a buyer
must delete every run (each older run's input and history hold the checkout), and reading what
happened must read them all.
"""

from datetime import timedelta

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

RPC_TIMEOUT = timedelta(seconds=5)
"""One Temporal call."""


async def run_ids(client: Client, workflow_id: str) -> list[str]:
    """Every run id of the flow still held by Temporal, the latest first ([] when none is).

    A run already deleted ends the walk: an erase asks for the oldest runs first, so after an
    interrupted erase the runs not yet asked for are the newest ones and the walk still reaches
    them all. (The server deletes a closed run some seconds after accepting the request; one it
    has accepted is as good as gone.)
    """
    try:
        latest = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return []
        raise
    found: list[str] = []
    run_id: str | None = latest.run_id
    while run_id:
        found.append(run_id)
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        try:
            async for first in handle.fetch_history_events(page_size=1, rpc_timeout=RPC_TIMEOUT):
                started = first.workflow_execution_started_event_attributes
                run_id = started.continued_execution_run_id
                break
            else:
                run_id = None
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            found.pop()  # deleted between the two calls
            run_id = None
    return found


async def delete_every_run(client: Client, workflow_id: str) -> int:
    """Delete each run of the flow, the oldest first; how many were deleted. Deleting a running
    run terminates it. Safe to repeat: a run that is already gone counts as done."""
    deleted = 0
    for run_id in reversed(await run_ids(client, workflow_id)):
        try:
            await client.workflow_service.delete_workflow_execution(
                DeleteWorkflowExecutionRequest(
                    namespace=client.namespace,
                    workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                ),
                timeout=RPC_TIMEOUT,
            )
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
        else:
            deleted += 1
    return deleted


async def fetch_flow_history(client: Client, workflow_id: str) -> list[HistoryEvent]:
    """The events of every run of the flow, the oldest run first (event ids start at 1 again in
    each run)."""
    events: list[HistoryEvent] = []
    for run_id in reversed(await run_ids(client, workflow_id)):
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        events.extend(history.events)
    return events
