"""A shop's own policy for its new checkouts: after an explicit override, before the engine's.

The policy travels in the flow's input, so a running flow keeps the one it started with.
"""

import asyncio
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from domain.policy import parse_policy
from domain.shops import DEFAULT_SHOP, ShopSettings
from service.reporting_policy import REREAD_SECONDS, CachedReportingPolicy, policy_for_reports
from store.engine_policy import EnginePolicyStore
from store.shops import ShopStore
from store.sql import SqlStore
from tests.api.test_reporting_policy import API_OWN, ENGINE, _api_alone, _flow_policy
from tests.ports import free_port
from tests.support import SmtpServer, engine_settings

SHOP_POLICY = """
name = "acme-own"
[[steps]]
delay = "3h"
action = "email"
template = "reminder"
"""
OVERRIDE = parse_policy(
    {"name": "override", "steps": [{"delay": "4h", "action": "email", "template": "reminder"}]},
    "test",
)


def _unexpected() -> None:
    raise AssertionError("the configured policy is not needed when the engine published one")


async def test_the_shop_policy_comes_after_an_override_and_before_the_engines(
    store: SqlStore,
) -> None:
    engine_policy, shops = EnginePolicyStore(store.engine), ShopStore(store.engine)
    await engine_policy.publish(ENGINE, "engine.toml")
    await shops.add("acme", "Acme", ShopSettings(policy=SHOP_POLICY))
    await shops.add("tokyo", "Tokyo", ShopSettings(time_zone="Asia/Tokyo"))

    async def chosen(shop_id: str, override: bool = False, with_shops: bool = True) -> str:
        found = await policy_for_reports(
            engine_policy,
            override=OVERRIDE if override else None,
            configured=_unexpected,  # type: ignore[arg-type]
            shops=shops if with_shops else None,
            shop_id=shop_id,
        )
        return f"{found.policy.name} {found.policy.time_zone}"

    assert await chosen("acme") == "acme-own UTC"
    assert await chosen("acme", override=True) == "override UTC"
    # A shop without a policy of its own gets the engine's, in its own zone when it sets one.
    assert await chosen(DEFAULT_SHOP) == "engine UTC"
    assert await chosen("tokyo") == "engine Asia/Tokyo"
    assert await chosen("tokyo", override=True) == "override UTC"
    assert await chosen("acme", with_shops=False) == "engine UTC"


async def test_the_api_keeps_each_shops_choice_and_sees_a_change_after_the_reread(
    store: SqlStore,
) -> None:
    now = 100.0
    shops = ShopStore(store.engine)
    await shops.add("acme", "Acme")
    cached = CachedReportingPolicy(
        EnginePolicyStore(store.engine), API_OWN, shops=shops, clock=lambda: now
    )
    assert (await cached.current("acme")).policy.name == "api-own"

    await shops.set("acme", changes={"policy": SHOP_POLICY})
    await shops.set(DEFAULT_SHOP, changes={"policy": SHOP_POLICY.replace("acme-own", "mine")})
    assert (await cached.current("acme")).policy.name == "api-own"
    # Another shop's choice is its own, read now.
    assert (await cached.current(DEFAULT_SHOP)).policy.name == "mine"
    now += REREAD_SECONDS
    acme = await cached.current("acme")
    assert (acme.policy.name, acme.source) == ("acme-own", "the shop acme's own")


async def test_a_new_flow_gets_its_shops_policy(
    dev_server_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, tmp_path: Path
) -> None:
    client = dev_server_env.client
    port = free_port()
    settings = engine_settings(
        smtp.port, data_dir=tmp_path, api_port=port, public_url=f"http://127.0.0.1:{port}"
    )
    async with _api_alone(client, store, settings) as http:
        assert await _flow_policy(client, http) == "api-own"
        # The API reports for the default shop until its keys name shops (issue 17, part 1).
        await ShopStore(store.engine).set(DEFAULT_SHOP, changes={"policy": SHOP_POLICY})
        await asyncio.sleep(REREAD_SECONDS)
        # The flow's input holds its policy: the shop's, from the store, not the API's own.
        assert await _flow_policy(client, http) == "acme-own"
