"""`checkout-recovery tasks ...`: the to-dos that `task` steps create for shop staff."""

from typing import Annotated, Any

import typer
from rich.table import Column, Table

from cli.output import JsonFlag, console, shown
from cli.support import (
    BadInputError,
    NotFoundError,
    ShopOption,
    print_json,
    require_shop,
    run_command,
    settings_or_fail,
)
from domain.shops import DEFAULT_SHOP
from domain.task import StaffTask, TaskStatus
from store.sql import SqlStore
from store.tasks import TaskStore
from workers.resources import open_store

tasks_app = typer.Typer(help="Staff tasks created by recovery flows.", no_args_is_help=True)


def _task_json(task: StaffTask) -> dict[str, Any]:
    return task.model_dump(mode="json", by_alias=True)


@tasks_app.command("list")
def list_tasks(
    open_only: Annotated[
        bool, typer.Option("--open/--all", help="Only open tasks (default), or all of them.")
    ] = True,
    shop: ShopOption = DEFAULT_SHOP,
    as_json: JsonFlag = False,
) -> None:
    """The shop's tasks, soonest due first."""
    settings = settings_or_fail()

    async def run() -> list[StaffTask]:
        async with open_store(settings) as store:
            shop_id = await require_shop(store, shop)
            return await store.list_tasks(TaskStatus.OPEN if open_only else None, shop_id=shop_id)

    found = run_command(run())
    if as_json:
        print_json({"tasks": [_task_json(task) for task in found]})
        return
    if not found:
        console().print("no open tasks" if open_only else "no tasks")
        return
    table = Table(
        "ID",
        "Due (UTC)",
        "Assignee",
        "Status",
        Column("Task", overflow="fold"),
        Column("Checkout", overflow="fold"),
    )
    for task in found:
        # The task's link to the flow is left to --json and `checkouts show`: it would double
        # every row's height.
        table.add_row(
            str(task.id),
            shown(task.due_date),
            task.assignee,
            task.status.value,
            task.title,
            task.checkout_id,
        )
    console().print(table)


def _print_changed(task: StaffTask, what: str, as_json: bool) -> None:
    """How `done` and `reopen` answer: the task in JSON, or one line saying what became of it."""
    if as_json:
        print_json({"task": _task_json(task)})
    else:
        console().print(f"task {task.id} {what}: {task.title}")


TaskId = Annotated[
    int,
    # The store's ids are 64-bit integers: a larger number names no task and no row.
    typer.Argument(metavar="ID", min=1, max=2**63 - 1, help="The task's id (tasks list)."),
]


async def _shops_task(store: SqlStore, task_id: int, shop: str) -> StaffTask:
    """The task when it is the shop's: another shop's task is not found, as an unknown one is."""
    task = await TaskStore(store.engine).get(task_id, shop_id=await require_shop(store, shop))
    if task is None:
        raise NotFoundError(f"no task with id {task_id}")
    return task


@tasks_app.command("done")
def done(task_id: TaskId, shop: ShopOption = DEFAULT_SHOP, as_json: JsonFlag = False) -> None:
    """Mark a task of the shop done; harmless to repeat."""
    settings = settings_or_fail()

    async def run() -> StaffTask:
        async with open_store(settings) as store:
            await _shops_task(store, task_id, shop)
            task = await TaskStore(store.engine).mark_done(task_id)
        if task is None:  # deleted (with its checkout) meanwhile
            raise NotFoundError(f"no task with id {task_id}")
        return task

    _print_changed(run_command(run()), "done", as_json)


@tasks_app.command("reopen")
def reopen(task_id: TaskId, shop: ShopOption = DEFAULT_SHOP, as_json: JsonFlag = False) -> None:
    """Open a done task of the shop again (it was marked done by mistake, or needs another go)."""
    settings = settings_or_fail()

    async def run() -> StaffTask:
        async with open_store(settings) as store:
            before = await _shops_task(store, task_id, shop)
            if before.status is TaskStatus.OPEN:
                # Not silently harmless as `done` is: an open task named here is most likely a
                # mistyped id, and the operator should know that nothing changed.
                raise BadInputError(f"task {task_id} is open already: nothing to reopen")
            task = await TaskStore(store.engine).reopen(task_id)
        if task is None:  # deleted (with its checkout) meanwhile
            raise NotFoundError(f"no task with id {task_id}")
        return task

    _print_changed(run_command(run()), "reopened", as_json)
