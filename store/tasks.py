"""Staff tasks as operators handle them: marking one done.

A companion of SqlStore on its engine (as ApiKeyStore is): SqlStore creates and lists tasks; this
is the change staff make to them (done, and open again).
"""

from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.task import StaffTask, TaskStatus
from store.schema import tasks


class TaskStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def mark_done(self, task_id: int) -> StaffTask | None:
        """The task after marking it done (harmless when it was done already); None if unknown."""
        return await self._set_status(task_id, TaskStatus.DONE)

    async def reopen(self, task_id: int) -> StaffTask | None:
        """The task after opening it again (harmless when it was open); None if unknown."""
        return await self._set_status(task_id, TaskStatus.OPEN)

    async def get(self, task_id: int, *, shop_id: str | None = None) -> StaffTask | None:
        """With `shop_id`, only that shop's task (an operator's read); without, by id alone."""
        query = select(tasks).where(tasks.c.id == task_id)
        if shop_id is not None:
            query = query.where(tasks.c.shop_id == shop_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else task_from_row(row)

    async def _set_status(self, task_id: int, status: TaskStatus) -> StaffTask | None:
        async with self._engine.begin() as conn:
            await conn.execute(update(tasks).where(tasks.c.id == task_id).values(status=status))
            row = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).first()
        return None if row is None else task_from_row(row)


def task_from_row(row: Row[Any]) -> StaffTask:
    # Columns and model fields share their names; the idempotency key and the shop (the
    # checkout's) stay internal.
    internal = ("key", "shop_id")
    return StaffTask.model_validate({k: v for k, v in row._mapping.items() if k not in internal})
