"""`tasks done` and `tasks reopen` on a task a flow created, on each database the store supports."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from store.sql import SqlStore
from tests.operators.conftest import DatabaseStack, answer_json, database_stack
from tests.support import eventually, sample_checkout


@pytest.fixture
async def stack(
    dev_server_env: WorkflowEnvironment, store: SqlStore, database_url: str, tmp_path: Path
) -> AsyncIterator[DatabaseStack]:
    async with database_stack(dev_server_env.client, store, database_url, tmp_path) as running:
        yield running


async def _task_of(stack: DatabaseStack, checkout_id: str) -> dict[str, Any]:
    """The open task the flow's task step (step 2, two seconds in) created for the checkout."""

    async def created() -> dict[str, Any] | None:
        listed = answer_json(await stack.cli("tasks", "list", "--json"))["tasks"]
        return next((t for t in listed if t["checkoutId"] == checkout_id), None)

    return await eventually(created, what="the flow's task")


async def test_a_done_task_is_reopened_and_listed_as_open_again(stack: DatabaseStack) -> None:
    buyer = {"email": f"ops-{uuid.uuid4().hex[:8]}@example.com", "visitorId": "visitor-1"}
    checkout_id = await stack.report(sample_checkout(buyerInfo=buyer))
    task = await _task_of(stack, checkout_id)
    task_id = str(task["id"])

    # An open task has nothing to reopen: most likely the operator typed another task's id.
    still_open = await stack.cli("tasks", "reopen", task_id)
    assert (still_open.code, still_open.stdout) == (2, "")
    assert f"error: task {task_id} is open already: nothing to reopen" in still_open.stderr

    assert (
        answer_json(await stack.cli("tasks", "done", task_id, "--json"))["task"]["status"] == "DONE"
    )
    reopened = answer_json(await stack.cli("tasks", "reopen", task_id, "--json"))["task"]
    assert reopened == {**task, "status": "OPEN"}
    listed = answer_json(await stack.cli("tasks", "list", "--json"))["tasks"]
    assert task["id"] in [t["id"] for t in listed]

    await stack.cli("tasks", "done", task_id)
    said = await stack.cli("tasks", "reopen", task_id)
    assert (said.code, said.stdout.strip()) == (0, f"task {task_id} reopened: {task['title']}")


async def test_reopen_of_an_unknown_task_is_exit_3(stack: DatabaseStack) -> None:
    missing = await stack.cli("tasks", "reopen", "999999", "--json")
    assert (missing.code, missing.stdout) == (3, "")
    assert "error: no task with id 999999" in missing.stderr
