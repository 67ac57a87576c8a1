"""Heartbeats for an activity with a heartbeat timeout, so Temporal soon notices a dead worker."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio import activity

_BEATS_PER_TIMEOUT = 4
"""A beat can be late (a busy event loop, the SDK's throttling) and the timeout still holds."""


@contextlib.asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Beat while the body runs, when the attempt has a heartbeat timeout (flows started before
    patch "send-heartbeat" have none).

    The first beat comes only after a quarter of the timeout: a send that ends sooner, nearly
    every one, costs no heartbeat call to Temporal at all."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        yield
        return
    beats = asyncio.create_task(_beat(timeout / _BEATS_PER_TIMEOUT))
    try:
        yield
    finally:
        beats.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beats


async def _beat(every: timedelta) -> None:
    while True:
        await asyncio.sleep(every.total_seconds())
        activity.heartbeat()
