"""API keys in the store's database: made, listed, revoked and checked."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.access import ApiKey, Scope, new_key, secret_matches, split_token
from domain.shops import DEFAULT_SHOP
from store.schema import api_keys


class ApiKeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(
        self,
        name: str,
        scopes: frozenset[Scope],
        now: datetime | None = None,
        *,
        shop_id: str | None = DEFAULT_SHOP,
    ) -> tuple[ApiKey, str]:
        """A new key of `shop_id` (None: a platform key) and its token; the token is not kept
        and cannot be shown again."""
        made = new_key()
        created = now or datetime.now(UTC)
        async with self._engine.begin() as conn:
            await conn.execute(
                api_keys.insert().values(
                    id=made.id,
                    name=name,
                    secret_hash=made.secret_hash,
                    scopes=" ".join(sorted(scopes)),
                    created_date=created,
                    shop_id=shop_id,
                )
            )
        return ApiKey(made.id, name, scopes, created, shop_id=shop_id), made.token

    async def list(self, include_revoked: bool = False) -> list[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.created_date, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_date.is_(None))
        async with self._engine.connect() as conn:
            return [_key_from_row(row) for row in await conn.execute(query)]

    async def revoke(self, key_id: str, now: datetime | None = None) -> bool:
        """Revoke a key; False when there is no such key or it was revoked already."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_date.is_(None))
                .values(revoked_date=now or datetime.now(UTC))
            )
        return bool(result.rowcount)

    async def verify(self, token: str) -> ApiKey | None:
        """The live key this token belongs to, or None (malformed, unknown, wrong or revoked)."""
        parts = split_token(token)
        if parts is None:
            return None
        key_id, secret = parts
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        if row is None or row.revoked_date is not None:
            return None
        return _key_from_row(row) if secret_matches(secret, row.secret_hash) else None


def _key_from_row(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        scopes=frozenset(Scope(s) for s in row.scopes.split()),
        created_date=row.created_date,
        revoked_date=row.revoked_date,
        shop_id=row.shop_id,
    )
