"""The running engine's policy in the store: published by each worker as it starts, read by the
commands that report checkouts, so a checkout gets the policy of the engine that runs its flow."""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.policy import RecoveryPolicy
from store.schema import engine_policy

logger = logging.getLogger(__name__)

_ROW = 1


@dataclass(frozen=True)
class PublishedPolicy:
    policy: RecoveryPolicy
    configured_as: str
    """What the worker's settings named: a built-in policy's name or a file's path."""
    published: datetime


class EnginePolicyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def publish(
        self, policy: RecoveryPolicy, configured_as: str, now: datetime | None = None
    ) -> None:
        """Make `policy` the engine's; the last worker to start wins (during a rolling update
        the new version's workers start last)."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(engine_policy))
            await conn.execute(
                engine_policy.insert().values(
                    id=_ROW,
                    configured_as=configured_as[:1000],
                    policy=policy.model_dump_json(),
                    published_date=now or datetime.now(UTC),
                )
            )

    async def published(self) -> PublishedPolicy | None:
        """The engine's policy; None when no worker has published one, or it no longer parses
        (a worker of an older version wrote it: the caller falls back to its own)."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(engine_policy))).first()
        if row is None:
            return None
        try:
            policy = RecoveryPolicy.model_validate_json(row.policy)
        except ValidationError:
            logger.warning("The engine's published policy no longer parses; using this one's")
            return None
        return PublishedPolicy(policy, row.configured_as, row.published_date)
