"""Webhook subscriptions: who receives which events."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.events import ALL_EVENTS
from store.schema import subscriptions
from store.secret_box import SecretBox, open_secret


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    events: frozenset[str]
    created_date: datetime

    def wants(self, slug: str) -> bool:
        return ALL_EVENTS in self.events or slug in self.events


class SubscriptionStore:
    def __init__(self, engine: AsyncEngine, secrets: SecretBox | None = None) -> None:
        """`secrets` seals signing secrets at rest (see store.secret_box); without it they are
        kept as given. Secrets stored before sealing are read either way."""
        self._engine = engine
        self._secrets = secrets

    async def add(self, url: str, secret: str, wanted: frozenset[str]) -> Subscription:
        made = Subscription(str(uuid.uuid4()), url, wanted, datetime.now(UTC))
        async with self._engine.begin() as conn:
            await conn.execute(
                subscriptions.insert().values(
                    id=made.id,
                    url=url,
                    secret=self._secrets.seal(secret, made.id) if self._secrets else secret,
                    events=" ".join(sorted(wanted)),
                    created_date=made.created_date,
                )
            )
        return made

    async def list(self) -> list[Subscription]:
        query = select(subscriptions).order_by(subscriptions.c.created_date, subscriptions.c.id)
        async with self._engine.connect() as conn:
            return [
                Subscription(row.id, row.url, frozenset(row.events.split()), row.created_date)
                for row in await conn.execute(query)
            ]

    async def remove(self, subscription_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(subscriptions).where(subscriptions.c.id == subscription_id)
            )
        return bool(result.rowcount)

    async def target(self, subscription_id: str) -> tuple[str, str] | None:
        """(url, secret) of a subscription, for signing one delivery; None once removed."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(subscriptions.c.url, subscriptions.c.secret).where(
                        subscriptions.c.id == subscription_id
                    )
                )
            ).first()
        return (row.url, open_secret(row.secret, subscription_id, self._secrets)) if row else None
