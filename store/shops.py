"""The shops registry: each shop's name and its own settings (domain.shops.ShopSettings).

The settings are one JSON document per shop, holding only what the shop sets, so that every
process reads the same configuration from the store and a field the shop never set keeps
following the deployment's value.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.dkim import KEEP_SEALED, DkimKey, DkimSetting, read_private_key, record_name
from domain.shops import ShopSettings, check_shop_id, check_shop_name
from store.schema import shops
from store.secret_box import SecretBox, open_secret


@dataclass(frozen=True)
class Shop:
    id: str
    name: str
    settings: ShopSettings
    """Only what the shop sets itself (domain.shops.effective_settings adds the rest)."""
    created_date: datetime
    updated_date: datetime


class ShopExistsError(ValueError):
    """A shop with that id is already registered."""


class ShopStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(
        self,
        shop_id: str,
        name: str,
        settings: ShopSettings | None = None,
        now: datetime | None = None,
    ) -> Shop:
        """Register a shop; ShopExistsError when its id is taken, ValueError for a bad id or
        name (domain.shops says the rules)."""
        moment = now or datetime.now(UTC)
        made = Shop(
            check_shop_id(shop_id),
            check_shop_name(name),
            settings or ShopSettings(),
            moment,
            moment,
        )
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    shops.insert().values(
                        id=made.id,
                        name=made.name,
                        settings=_as_json(made.settings),
                        created_date=moment,
                        updated_date=moment,
                    )
                )
        except IntegrityError:
            raise ShopExistsError(f"a shop with id {shop_id!r} exists already") from None
        return made

    async def get(self, shop_id: str) -> Shop | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(shops).where(shops.c.id == shop_id))).first()
        return None if row is None else _shop(row)

    async def list(self) -> list[Shop]:
        async with self._engine.connect() as conn:
            return [_shop(row) for row in await conn.execute(select(shops).order_by(shops.c.id))]

    async def set(
        self,
        shop_id: str,
        *,
        name: str | None = None,
        changes: Mapping[str, object] | None = None,
        now: datetime | None = None,
    ) -> Shop | None:
        """Change the name and some settings of a shop (ShopSettings.changed: None unsets a
        field, the others stay as they are); None when there is no such shop. Raises
        InvalidInputError for a bad setting, ValueError for a bad name, and changes nothing."""
        if name is not None:
            check_shop_name(name)
        moment = now or datetime.now(UTC)
        this_shop = shops.c.id == shop_id
        async with self._engine.begin() as conn:
            # Written before it is read, so that the transaction holds the row's lock (SQLite:
            # the database's write lock) while it merges: of two concurrent changes to different
            # fields, neither is lost.
            touched = await conn.execute(
                shops.update().where(this_shop).values(updated_date=moment)
            )
            if not touched.rowcount:
                return None
            current = _shop((await conn.execute(select(shops).where(this_shop))).one())
            settings = current.settings.changed(changes or {})
            await conn.execute(
                shops.update()
                .where(this_shop)
                .values(
                    name=current.name if name is None else name,
                    settings=_as_json(settings),
                    updated_date=moment,
                )
            )
        return Shop(
            current.id,
            current.name if name is None else name,
            settings,
            current.created_date,
            moment,
        )


def _as_json(settings: ShopSettings) -> str:
    # The one dump that keeps a DKIM key (sealed): every other leaves it out (domain.dkim).
    return settings.model_dump_json(by_alias=True, exclude_none=True, context=KEEP_SEALED)


def seal_dkim(box: SecretBox, domain: str, selector: str, key: DkimKey) -> DkimSetting:
    """A shop's DKIM identity with its key sealed for the store, as subscribers' secrets are.
    Bound to the identity's DNS name rather than to the shop: the sealed key opens only as the
    d= and s= it was set for. Raises ValueError for a bad domain or selector."""
    setting = DkimSetting(
        domain=domain, selector=selector, fingerprint=key.fingerprint, sealed_key="sealed1."
    )
    sealed = box.seal(key.pem, _dkim_row(setting))
    return setting.model_copy(update={"sealed_key": sealed})


def open_dkim(box: SecretBox | None, setting: DkimSetting) -> DkimKey:
    """The private key a sealed DKIM setting holds; SecretUnreadableError when no key of the
    box opens it (or it was copied to another identity), DkimError when it is no key."""
    return read_private_key(open_secret(setting.sealed_key, _dkim_row(setting), box))


def _dkim_row(setting: DkimSetting) -> str:
    return f"dkim/{record_name(setting.selector, setting.domain)}"


def _shop(row: Row[Any]) -> Shop:
    settings = ShopSettings.model_validate_json(row.settings)
    return Shop(row.id, row.name, settings, row.created_date, row.updated_date)
