"""Webhook subscriptions: who receives which events. A subscription belongs to one shop and
receives only that shop's events (the shop of the event's checkout, store.outbox)."""

import builtins
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.events import ALL_EVENTS
from domain.shops import DEFAULT_SHOP
from store.schema import events, subscriptions
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

    async def add(
        self, url: str, secret: str, wanted: frozenset[str], *, shop_id: str = DEFAULT_SHOP
    ) -> Subscription:
        made = Subscription(str(uuid.uuid4()), url, wanted, datetime.now(UTC))
        async with self._engine.begin() as conn:
            await conn.execute(
                subscriptions.insert().values(
                    id=made.id,
                    url=url,
                    secret=self._secrets.seal(secret, made.id) if self._secrets else secret,
                    events=" ".join(sorted(wanted)),
                    created_date=made.created_date,
                    shop_id=shop_id,
                )
            )
        return made

    async def list(self, *, shop_id: str | None = None) -> list[Subscription]:
        """`shop_id`'s subscriptions (a request's); None: every shop's (the event dispatcher's
        quick look whether anyone wants an event at all)."""
        query = select(subscriptions).order_by(subscriptions.c.created_date, subscriptions.c.id)
        if shop_id is not None:
            query = query.where(subscriptions.c.shop_id == shop_id)
        return await self._read(query)

    async def for_event(self, event_id: str) -> builtins.list[Subscription]:
        """The subscriptions of the event's shop: the only ones it may be delivered to."""
        shop = select(events.c.shop_id).where(events.c.id == event_id).scalar_subquery()
        query = (
            select(subscriptions)
            .where(subscriptions.c.shop_id == shop)
            .order_by(subscriptions.c.created_date, subscriptions.c.id)
        )
        return await self._read(query)

    async def _read(self, query: Select[Any]) -> builtins.list[Subscription]:
        async with self._engine.connect() as conn:
            return [
                Subscription(row.id, row.url, frozenset(row.events.split()), row.created_date)
                for row in await conn.execute(query)
            ]

    async def remove(self, subscription_id: str, *, shop_id: str) -> bool:
        """False when `shop_id` has no such subscription (another shop's is not found)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(subscriptions).where(
                    subscriptions.c.id == subscription_id, subscriptions.c.shop_id == shop_id
                )
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
