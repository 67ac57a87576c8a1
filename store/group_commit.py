"""Group commit: many small write operations share one transaction.

SQLite has one writer at a time and each transaction costs several hops between the event loop and
the driver's thread. Under load, a worker's email steps would queue behind each other's commits.
Here every write waiting at the moment a transaction starts joins it, so a hundred concurrent steps
cost a handful of commits instead of a hundred.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

logger = logging.getLogger(__name__)

T = TypeVar("T")
WriteOp = Callable[[AsyncConnection], Awaitable[T]]

_MAX_BATCH = 256


class GroupCommitter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pending: list[tuple[WriteOp[Any], asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, op: WriteOp[T]) -> T:
        """Run `op` inside a write transaction (possibly shared) and return its result once the
        transaction has committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def close(self) -> None:
        if self._drainer is not None:
            await self._drainer

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            try:
                async with self._engine.begin() as conn:
                    results = [await op(conn) for op, _ in batch]
            except Exception:
                # One operation spoiled the shared transaction (all of it rolled back): run each
                # alone, so that only the faulty one fails.
                logger.debug("Group commit of %d writes failed; retrying one by one", len(batch))
                for op, future in batch:
                    await self._run_alone(op, future)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _run_alone(self, op: WriteOp[Any], future: asyncio.Future[Any]) -> None:
        try:
            async with self._engine.begin() as conn:
                result = await op(conn)
        except Exception as err:
            if not future.done():
                future.set_exception(err)
        else:
            if not future.done():
                future.set_result(result)
