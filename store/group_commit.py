"""Group commit: many small write operations share one transaction.

SQLite has one writer at a time and each transaction costs several hops between the event loop and
the driver's thread. Under load, a worker's email steps would queue behind each other's commits.
Here every write waiting at the moment a transaction starts joins it, so a hundred concurrent steps
cost a handful of commits instead of a hundred; when one of them spoils the shared transaction
(all of it rolls back), each runs again alone, so that only the faulty one fails.
"""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.coalescing import Coalescer

T = TypeVar("T")
WriteOp = Callable[[AsyncConnection], Awaitable[T]]


class GroupCommitter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._ops: Coalescer[WriteOp[Any], Any] = Coalescer(self._in_one_transaction)

    async def run(self, op: WriteOp[T]) -> T:
        """Run `op` inside a write transaction (possibly shared) and return its result once the
        transaction has committed."""
        return cast(T, await self._ops.run(op))

    async def close(self) -> None:
        await self._ops.close()

    async def _in_one_transaction(self, ops: list[WriteOp[Any]]) -> list[Any]:
        async with self._engine.begin() as conn:
            return [await op(conn) for op in ops]
