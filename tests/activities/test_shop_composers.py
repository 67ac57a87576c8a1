"""Which composer a shop's emails get, and how soon a change of its settings reaches them."""

from activities.email_compose import EmailComposer
from activities.email_message import Sender
from activities.rendering import TemplateRenderer
from activities.shop_composers import KEEP_SECONDS, ShopComposers
from domain.shops import EffectiveShopSettings, ShopSettings
from store.shops import ShopStore
from store.sql import SqlStore
from tests.support import engine_settings


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_shop_gets_its_own_composer_and_a_change_after_the_keep_time(
    store: SqlStore,
) -> None:
    shops = ShopStore(store.engine)
    await shops.add("plain", "Plain")
    await shops.add("own", "Own", ShopSettings(shop_name="Own Shop"))
    built: list[EffectiveShopSettings] = []

    def build(settings: EffectiveShopSettings) -> EmailComposer:
        built.append(settings)
        return EmailComposer(TemplateRenderer(), Sender(settings.mail_from), settings.shop_name)

    clock = Clock()
    composers = ShopComposers(shops, engine_settings(2525), build, clock=clock)

    assert await composers.for_shop("plain") is None  # sets nothing: the deployment's
    assert await composers.for_shop("unknown") is None
    own = await composers.for_shop("own")
    assert own is not None and own.shop_name == "Own Shop"
    assert await composers.for_shop("own") is own
    await shops.set("own", changes={"shop_name": "Renamed"})
    clock.now += KEEP_SECONDS / 2
    assert await composers.for_shop("own") is own  # kept a while: no read per send
    clock.now += KEEP_SECONDS
    renamed = await composers.for_shop("own")
    assert renamed is not None and renamed.shop_name == "Renamed"
    clock.now += KEEP_SECONDS * 2
    assert await composers.for_shop("own") is renamed  # the same settings: not built again
    assert [b.shop_name for b in built] == ["Own Shop", "Renamed"]
