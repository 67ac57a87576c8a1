"""Coalescing: what arrives while a batch is being handled waits for the next batch, which takes
it all at once.

Under load, a hundred concurrent callers cost a handful of batches instead of a hundred calls;
alone, a caller waits for nothing. When a batch fails as a whole, each of its items is handled
again on its own, so that only the faulty one fails.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class Coalescer(Generic[ItemT, ResultT]):
    def __init__(
        self, handle: Callable[[list[ItemT]], Awaitable[list[ResultT]]], max_batch: int = 256
    ) -> None:
        """`handle` takes a batch and returns one result per item, in order."""
        self._handle = handle
        self._max_batch = max_batch
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, item: ItemT) -> ResultT:
        """`item`'s result, once the batch it joined has been handled."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        # Shielded: a caller that gives up must not cancel the batch the others are in.
        return await asyncio.shield(future)

    async def close(self) -> None:
        if self._drainer is not None:
            await self._drainer

    async def _drain(self) -> None:
        while self._pending:
            size = self._max_batch
            batch, self._pending = self._pending[:size], self._pending[size:]
            try:
                results = await self._handle([item for item, _ in batch])
            except Exception:
                logger.debug("A batch of %d failed as a whole; handling each alone", len(batch))
                for item, future in batch:
                    await self._alone(item, future)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _alone(self, item: ItemT, future: asyncio.Future[ResultT]) -> None:
        try:
            [result] = await self._handle([item])
        except Exception as err:
            if not future.done():
                future.set_exception(err)
        else:
            if not future.done():
                future.set_result(result)
