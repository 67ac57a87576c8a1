"""Which composer writes a checkout's email: its shop's sender, name, links, language and
templates (domain.shops.effective_settings), or none of its own (the deployment's) for a shop
that sets nothing.

A shop's settings are read from the store at most once per KEEP_SECONDS per worker, so a change
made with `shops set` reaches the next sends within that, and a send costs no extra read.
"""

import time
from collections.abc import Callable

from activities.email_compose import EmailComposer
from domain.shops import DeploymentSettings, EffectiveShopSettings, ShopSettings
from domain.shops import effective_settings as shop_effective_settings
from store.kept_reads import KeptReads
from store.shops import ShopStore

KEEP_SECONDS = 30.0

ComposerFactory = Callable[[EffectiveShopSettings], EmailComposer]


class ShopComposers:
    def __init__(
        self,
        shops: ShopStore,
        deployment: DeploymentSettings,
        build: ComposerFactory,
        *,
        keep_seconds: float = KEEP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`build`: a composer for a shop's effective settings."""
        self._shops = shops
        self._deployment = deployment
        self._build = build
        self._kept = KeptReads(self._composer_of, seconds=keep_seconds, clock=clock)
        self._built: dict[ShopSettings, EmailComposer] = {}

    async def for_shop(self, shop_id: str) -> EmailComposer | None:
        """The shop's composer; None when the shop sets nothing (the deployment's applies)."""
        return await self._kept.get(shop_id)

    async def _composer_of(self, shop_id: str) -> EmailComposer | None:
        shop = await self._shops.get(shop_id)
        settings = shop.settings if shop is not None else ShopSettings()
        if settings == ShopSettings():
            return None
        composer = self._built.get(settings)
        if composer is None:
            # Built once per distinct settings: a renderer compiles its templates lazily and
            # keeps them, which a rebuild every KEEP_SECONDS would throw away.
            composer = self._build(shop_effective_settings(settings, self._deployment))
            self._built[settings] = composer
        return composer
