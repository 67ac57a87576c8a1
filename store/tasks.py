"""Staff tasks as operators handle them: marking one done.

A companion of SqlStore on its engine (as ApiKeyStore is): SqlStore creates and lists tasks; this
is the one change staff make to them.
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
        async with self._engine.begin() as conn:
            await conn.execute(
                update(tasks).where(tasks.c.id == task_id).values(status=TaskStatus.DONE)
            )
            row = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).first()
        return None if row is None else task_from_row(row)


def task_from_row(row: Row[Any]) -> StaffTask:
    # Columns and model fields share their names; the idempotency key stays internal.
    return StaffTask.model_validate({k: v for k, v in row._mapping.items() if k != "key"})
