"""The shops registry on each database: add, get, list and partial changes of a shop's settings."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import InvalidInputError
from domain.shops import DEFAULT_SHOP, ShopSettings
from store.shops import ShopExistsError, ShopStore
from store.sql import SqlStore

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = """
name = "acme"
[[steps]]
delay = "2h"
action = "email"
template = "reminder"
"""


async def test_the_default_shop_is_there_with_no_settings_of_its_own(store: SqlStore) -> None:
    default = await ShopStore(store.engine).get(DEFAULT_SHOP)
    assert default is not None
    assert default.settings == ShopSettings()


async def test_a_shop_is_added_read_back_and_listed(store: SqlStore) -> None:
    shops = ShopStore(store.engine)
    settings = ShopSettings(policy=POLICY, mail_from="Acme <hello@acme.example>")
    await shops.add("acme", "Acme Ltd", settings, NOW)

    acme = await shops.get("acme")
    assert acme is not None
    assert (acme.id, acme.name, acme.created_date, acme.updated_date) == (
        "acme",
        "Acme Ltd",
        NOW,
        NOW,
    )
    assert acme.settings == settings
    policy = acme.settings.recovery_policy()
    assert policy is not None and policy.name == "acme"
    assert [shop.id for shop in await shops.list()] == ["acme", DEFAULT_SHOP]
    assert await shops.get("nobody") is None


async def test_a_taken_id_is_refused_and_the_first_shop_kept(store: SqlStore) -> None:
    shops = ShopStore(store.engine)
    await shops.add("acme", "Acme", now=NOW)
    with pytest.raises(ShopExistsError, match="acme"):
        await shops.add("acme", "Other", ShopSettings(shop_name="Other"))
    acme = await shops.get("acme")
    assert acme is not None and acme.name == "Acme" and acme.settings == ShopSettings()


async def test_a_bad_id_or_name_is_refused(store: SqlStore) -> None:
    shops = ShopStore(store.engine)
    for shop_id in ("Acme", "acme shop", "-acme", ""):
        with pytest.raises(ValueError, match="shop id"):
            await shops.add(shop_id, "Acme")
    with pytest.raises(ValueError, match="shop name"):
        await shops.add("acme", "  ")
    assert [shop.id for shop in await shops.list()] == [DEFAULT_SHOP]


async def test_set_changes_the_named_fields_only_and_none_unsets_one(store: SqlStore) -> None:
    shops = ShopStore(store.engine)
    await shops.add("acme", "Acme", ShopSettings(shop_name="Acme", time_zone="Europe/Berlin"), NOW)
    later = NOW + timedelta(hours=1)

    changed = await shops.set(
        "acme", changes={"mailFrom": "hi@acme.example", "time_zone": None}, now=later
    )
    assert changed is not None
    expected = ShopSettings(shop_name="Acme", mail_from="hi@acme.example")
    assert changed.settings == expected
    stored = await shops.get("acme")
    assert stored is not None
    assert stored.settings == expected
    assert (stored.name, stored.created_date, stored.updated_date) == ("Acme", NOW, later)

    renamed = await shops.set("acme", name="Acme GmbH", now=later)
    assert renamed is not None and renamed.settings == expected
    stored = await shops.get("acme")
    assert stored is not None and stored.name == "Acme GmbH"


async def test_a_bad_setting_changes_nothing_and_names_the_field(store: SqlStore) -> None:
    shops = ShopStore(store.engine)
    await shops.add("acme", "Acme", ShopSettings(shop_name="Acme"), NOW)
    bad_policy = POLICY.replace('"2h"', '"soon"')
    with pytest.raises(InvalidInputError) as raised:
        await shops.set(
            "acme",
            name="Renamed",
            changes={"policy": bad_policy, "publicUrl": "ftp://x", "shop_name": None},
        )
    problems = " ".join(raised.value.problems)
    assert "policy: step 1 (email): delay" in problems
    assert "publicUrl" in problems
    stored = await shops.get("acme")
    assert stored is not None
    assert (stored.name, stored.settings, stored.updated_date) == (
        "Acme",
        ShopSettings(shop_name="Acme"),
        NOW,
    )


async def test_an_unknown_shop_is_none(store: SqlStore) -> None:
    assert await ShopStore(store.engine).set("nobody", changes={"shop_name": "X"}) is None


async def test_concurrent_changes_of_different_fields_both_stay(store: SqlStore) -> None:
    shops = ShopStore(store.engine)
    await shops.add("acme", "Acme", now=NOW)
    await asyncio.gather(
        *(
            shops.set("acme", changes={field: value})
            for field, value in (
                ("shop_name", "Acme"),
                ("time_zone", "Europe/Berlin"),
                ("default_language", "de"),
                ("reply_to", "help@acme.example"),
            )
        )
    )
    stored = await shops.get("acme")
    assert stored is not None
    assert stored.settings == ShopSettings(
        shop_name="Acme",
        time_zone="Europe/Berlin",
        default_language="de",
        reply_to="help@acme.example",
    )
