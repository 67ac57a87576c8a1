"""Migrations bring SQLite and PostgreSQL to exactly the schema the code declares."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from store.migrate import (
    BASELINE,
    VERSION_TABLE,
    alembic_config,
    current_revision,
    head_revision,
    upgrade_to_head,
)
from store.schema import activities, checkouts, metadata
from store.sql import SCHEDULED_KEY, SqlStore
from tests.support import sample_checkout

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


@contextlib.asynccontextmanager
async def _opened(url: str) -> AsyncIterator[SqlStore]:
    store = SqlStore.from_url(url)
    try:
        yield store
    finally:
        await store.close()


async def _differences(store: SqlStore) -> list[object]:
    def compare(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with store.engine.connect() as conn:
        return await conn.run_sync(compare)


async def test_upgrade_gives_the_declared_schema_and_is_repeatable(database_url: str):
    async with _opened(database_url) as store:
        assert await current_revision(store.engine) is None
        await store.create_schema()
        await store.create_schema()  # a second start changes nothing
        assert await current_revision(store.engine) == head_revision()
        assert await _differences(store) == []


async def test_parts_starting_together_migrate_once(database_url: str):
    stores = [SqlStore.from_url(database_url) for _ in range(4)]
    try:
        await asyncio.gather(*(store.create_schema() for store in stores))
        assert await current_revision(stores[0].engine) == head_revision()
        assert await _differences(stores[0]) == []
    finally:
        for store in stores:
            await store.close()


def _baseline_without_version_table(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), BASELINE)
    connection.exec_driver_sql(f"DROP TABLE {VERSION_TABLE}")


async def test_a_store_made_before_migrations_is_stamped_not_recreated(database_url: str):
    checkout = sample_checkout().model_copy(update={"id": "c-1", "created_date": NOW})
    # What create_schema did before migrations: the baseline tables, no alembic_version, and
    # data in them.
    async with _opened(database_url) as store, store.engine.begin() as conn:
        await conn.run_sync(_baseline_without_version_table)
        await conn.execute(
            checkouts.insert().values(
                id="c-1",
                checkout_id=checkout.checkout_id,
                status="ABANDONED",
                created_date=NOW,
                updated_date=NOW,
                snapshot=checkout.model_dump_json(by_alias=True, exclude_none=True),
            )
        )
        await conn.execute(
            activities.insert().values(
                checkout_id="c-1", key=SCHEDULED_KEY, type="SCHEDULED", created_date=NOW
            )
        )

    async with _opened(database_url) as store:
        await upgrade_to_head(store.engine)
        assert await current_revision(store.engine) == head_revision()
        assert await _differences(store) == []
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"checkouts", "activities", "events", "alembic_version"} <= tables
        # The old rows are still there, and the store goes on working.
        assert (await store.save_reported(checkout, NOW.replace(hour=11))).first_reported_at == NOW
        record = await store.get("c-1")
        assert record is not None and record.checkout_id == checkout.checkout_id
