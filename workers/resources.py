"""Opening the parts every command needs, with their clean-up."""

import contextlib
from collections.abc import AsyncIterator

from service.checkouts import CheckoutService
from store.sql import SqlStore
from workers.background import running_in_background
from workers.search_attributes import recheck_until_answered, registered_or_unreachable
from workers.settings import Settings
from workers.temporal_client import connect


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[SqlStore]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = SqlStore.from_url(settings.store_url, keep_sent_emails=settings.keep_sent_emails)
    await store.create_schema()
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def open_service(settings: Settings) -> AsyncIterator[CheckoutService]:
    """The service, whether or not Temporal answers yet: what it is told waits in the store's
    hand-off until Temporal takes it."""
    async with open_store(settings) as store:
        client = await connect(settings, lazy=True)
        answer = await registered_or_unreachable(client)
        service = CheckoutService(
            client, store, settings.task_queue, search_attributes=bool(answer)
        )

        def apply(registered: bool) -> None:
            service.search_attributes = registered

        recheck = recheck_until_answered(client, apply) if answer is None else _nothing()
        try:
            async with running_in_background(recheck, "search-attribute-check"):
                yield service
        finally:
            await service.handoff.flush()


async def _nothing() -> None:
    return None
