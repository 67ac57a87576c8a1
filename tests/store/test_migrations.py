"""Migrations bring SQLite and PostgreSQL to exactly the schema the code declares."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from store.migrate import current_revision, head_revision, upgrade_to_head
from store.schema import metadata
from store.sql import SqlStore


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_upgrade_gives_the_declared_schema_and_is_repeatable(database_url: str):
    store = SqlStore.from_url(database_url)
    try:
        assert await current_revision(store.engine) is None
        await store.create_schema()
        await store.create_schema()  # a second start changes nothing
        assert await current_revision(store.engine) == head_revision()
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await store.close()


async def test_a_store_made_before_migrations_is_stamped_not_recreated(database_url: str):
    store = SqlStore.from_url(database_url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        await upgrade_to_head(store.engine)
        assert await current_revision(store.engine) == head_revision()
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"checkouts", "activities", "events", "alembic_version"} <= tables
    finally:
        await store.close()
