"""Store reads a long-running process keeps a few seconds rather than repeat per request: in the
API, each shop's reporting policy (service.reporting_policy) and which shops exist (api.auth).

A value is kept per key for `seconds`, then read again, so a change in the store reaches the
process within that time. With `keep_missing=False`, nothing found (None) is not kept: what is
made a moment later (a new shop) is found at once.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_KEPT = 10_000
"""Keys kept at most; beyond, the cache starts again (it only bounds memory should a caller name
many distinct keys)."""


class KeptReads(Generic[K, V]):
    """What `read(key)` answered, kept `seconds` per key (see the module's docstring)."""

    def __init__(
        self,
        read: Callable[[K], Awaitable[V]],
        *,
        seconds: float,
        keep_missing: bool = True,
        clock: Callable[[], float] = time.monotonic,
        max_kept: int = MAX_KEPT,
    ) -> None:
        self._read = read
        self._seconds = seconds
        self._keep_missing = keep_missing
        self._clock = clock
        self._max_kept = max_kept
        self._kept: dict[K, tuple[V, float]] = {}
        """By key: the value and when it expires."""
        # When a value expires under load, one request reads the store; the others wait for it.
        self._reading = asyncio.Lock()

    async def get(self, key: K) -> V:
        kept = self._fresh(key)
        if kept is not None:
            return kept[0]
        async with self._reading:
            kept = self._fresh(key)
            if kept is not None:
                return kept[0]
            value = await self._read(key)
            if value is not None or self._keep_missing:
                if len(self._kept) >= self._max_kept:
                    self._kept.clear()
                self._kept[key] = (value, self._clock() + self._seconds)
            return value

    def _fresh(self, key: K) -> tuple[V, float] | None:
        kept = self._kept.get(key)
        return kept if kept is not None and self._clock() < kept[1] else None
