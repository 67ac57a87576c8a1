"""Every run of a flow that continued as new: found, read in order, and erased, on the dev server."""

import asyncio
import uuid

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from service.flow_runs import delete_every_run, fetch_flow_history, run_ids

RUNS = 3


@workflow.defn(name="ContinuingTwice")
class ContinuingTwice:
    """Continues as new until it is the third run, then waits to be deleted."""

    @workflow.run
    async def run(self, run_number: int) -> None:
        if run_number < RUNS:
            workflow.continue_as_new(run_number + 1)
        await workflow.wait_condition(lambda: False)


async def _started_chain(client: Client, task_queue: str) -> str:
    workflow_id = f"runs-{uuid.uuid4()}"
    handle = await client.start_workflow(
        ContinuingTwice.run, 1, id=workflow_id, task_queue=task_queue
    )
    for _ in range(200):
        if len(await run_ids(client, workflow_id)) == RUNS:
            return workflow_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} did not reach {RUNS} runs")


@pytest.fixture
async def worker(dev_server_env: WorkflowEnvironment):
    task_queue = f"runs-{uuid.uuid4()}"
    async with Worker(dev_server_env.client, task_queue=task_queue, workflows=[ContinuingTwice]):
        yield dev_server_env.client, task_queue


async def _status(client: Client, workflow_id: str, run_id: str) -> WorkflowExecutionStatus | None:
    try:
        description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    except RPCError as err:
        assert err.status is RPCStatusCode.NOT_FOUND
        return None
    return description.status


async def _deleted(client: Client, workflow_id: str, run_id: str) -> bool:
    """Whether the run is gone within 60 s: the server deletes a closed run in the background,
    some seconds after it accepted the request."""
    for _ in range(600):
        if await _status(client, workflow_id, run_id) is None:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_the_runs_are_found_latest_first_and_read_oldest_first(worker):
    client, task_queue = worker
    workflow_id = await _started_chain(client, task_queue)

    runs = await run_ids(client, workflow_id)
    assert len(set(runs)) == RUNS
    assert await _status(client, workflow_id, runs[0]) is WorkflowExecutionStatus.RUNNING
    for older in runs[1:]:
        assert await _status(client, workflow_id, older) is WorkflowExecutionStatus.CONTINUED_AS_NEW

    events = await fetch_flow_history(client, workflow_id)
    starts = [e for e in events if e.HasField("workflow_execution_started_event_attributes")]
    # The oldest run first: its start continues nothing; each later one continues the one before.
    continued = [
        e.workflow_execution_started_event_attributes.continued_execution_run_id for e in starts
    ]
    assert continued == ["", *reversed(runs[1:])]


async def test_erasing_deletes_every_run_and_can_be_repeated(worker):
    client, task_queue = worker
    workflow_id = await _started_chain(client, task_queue)
    runs = await run_ids(client, workflow_id)

    assert await delete_every_run(client, workflow_id) == RUNS

    for run_id in runs:
        assert await _deleted(client, workflow_id, run_id), run_id
    assert await run_ids(client, workflow_id) == []
    assert await delete_every_run(client, workflow_id) == 0


async def test_an_erase_interrupted_after_the_oldest_run_still_reaches_the_rest(worker):
    client, task_queue = worker
    workflow_id = await _started_chain(client, task_queue)
    runs = await run_ids(client, workflow_id)
    # As if the erase had deleted the oldest run and then died.
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=runs[-1]),
        )
    )
    assert await _deleted(client, workflow_id, runs[-1])

    assert await run_ids(client, workflow_id) == runs[:-1]
    assert await delete_every_run(client, workflow_id) == RUNS - 1
