"""The running engine's policy in the store: published by workers, read by reporting commands."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from store.engine_policy import EnginePolicyStore
from store.schema import engine_policy
from store.sql import SqlStore
from workers.policy_files import load_policy

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_nothing_is_published_until_a_worker_starts(store: SqlStore) -> None:
    assert await EnginePolicyStore(store.engine).published() is None


async def test_the_last_worker_to_publish_wins_and_the_policy_round_trips(store: SqlStore) -> None:
    policies = EnginePolicyStore(store.engine)
    demo, default = load_policy("demo"), load_policy("default")
    await policies.publish(default, "default", NOW)
    await policies.publish(demo, "demo", NOW + timedelta(minutes=1))

    published = await policies.published()
    assert published is not None
    assert published.policy == demo
    assert published.configured_as == "demo"
    assert published.published == NOW + timedelta(minutes=1)


async def test_a_long_file_path_is_kept_short_enough_for_the_column(store: SqlStore) -> None:
    policies = EnginePolicyStore(store.engine)
    await policies.publish(load_policy("demo"), "/" + "p" * 5000, NOW)
    published = await policies.published()
    assert published is not None and len(published.configured_as) == 1000


async def test_a_policy_this_version_cannot_read_counts_as_none(store: SqlStore) -> None:
    policies = EnginePolicyStore(store.engine)
    await policies.publish(load_policy("demo"), "demo", NOW)
    async with store.engine.begin() as conn:
        await conn.execute(update(engine_policy).values(policy='{"steps": "not a list"}'))
    assert await policies.published() is None
