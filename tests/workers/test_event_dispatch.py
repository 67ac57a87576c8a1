"""The event dispatcher starts a delivery workflow only for events some subscription wants."""

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from domain.events import EVENT_WORKFLOW_PREFIX
from store.outbox import Outbox
from store.schema import events
from store.sql import SqlStore
from store.subscriptions import SubscriptionStore
from tests.support import sample_checkout
from workers.event_dispatch import EventDispatcher

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


async def _event_ids(store: SqlStore) -> dict[str, str]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(select(events.c.slug, events.c.id))
        return {row.slug: row.id for row in rows}


async def test_only_wanted_events_become_delivery_workflows(
    dev_server_env: WorkflowEnvironment, store: SqlStore
) -> None:
    client = dev_server_env.client
    subscriptions = SubscriptionStore(store.engine)
    await subscriptions.add("https://hooks.example/x", "whsec_c2VjcmV0", frozenset({"recovered"}))
    outbox = Outbox(store.engine)
    dispatcher = EventDispatcher(client, outbox, subscriptions, f"unpolled-{uuid.uuid4()}")
    checkout = sample_checkout().model_copy(update={"id": f"c-{uuid.uuid4()}", "created_date": NOW})
    await store.save_reported(checkout, NOW)
    assert await store.mark_recovered(checkout.id or "", NOW, None)

    assert await dispatcher.dispatch_pending() == 2
    assert await outbox.pending() == []  # both handed over, the unwanted one without a workflow
    ids = await _event_ids(store)
    wanted = client.get_workflow_handle(f"{EVENT_WORKFLOW_PREFIX}{ids['recovered']}")
    assert (await wanted.describe()).id == wanted.id
    unwanted = client.get_workflow_handle(f"{EVENT_WORKFLOW_PREFIX}{ids['created']}")
    with pytest.raises(RPCError) as err:
        await unwanted.describe()
    assert err.value.status is RPCStatusCode.NOT_FOUND
    await wanted.terminate()
