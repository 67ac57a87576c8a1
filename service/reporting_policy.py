"""Which policy a reported checkout gets: the one rule for every command that reports.

The flow keeps the policy it starts with, and the command that reports a checkout is often not
the engine: `checkout-recovery start` in another shell, an import script. So a report takes, in
this order, the policy named on that command (`--policy`, an explicit override), the shop's own
policy when its settings hold one (store.shops), the policy the running engine's workers
published to the store as they started, and only when no worker ever did, the reporting
process's own configured policy. A shop that sets a time zone has it replace the policy's (but
not an explicit override's: that one is taken exactly as named). The API, which reports for as
long as it runs, keeps each shop's choice a few seconds (CachedReportingPolicy) rather than read
it per report.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from domain.policy import RecoveryPolicy
from domain.shops import DEFAULT_SHOP
from store.engine_policy import EnginePolicyStore
from store.shops import ShopStore

logger = logging.getLogger(__name__)

REREAD_SECONDS = 5.0
"""How long a long-running process (the API) keeps the choice before reading the store again:
a newly started engine's policy reaches its reports within this, and a report costs no extra
store read."""


@dataclass(frozen=True)
class ChosenPolicy:
    policy: RecoveryPolicy
    source: str
    """Why this one, in words for the command's answer."""


async def policy_for_reports(
    store: EnginePolicyStore,
    *,
    override: RecoveryPolicy | None,
    configured: Callable[[], RecoveryPolicy],
    shops: ShopStore | None = None,
    shop_id: str = DEFAULT_SHOP,
) -> ChosenPolicy:
    """The policy a new checkout of `shop_id` gets (see the module's docstring); without
    `shops`, no shop's own policy is looked for. `configured` is called only when it is needed
    (it loads and checks templates)."""
    if override is not None:
        return ChosenPolicy(override, "--policy override")
    shop = await shops.get(shop_id) if shops is not None else None
    own = shop.settings.recovery_policy() if shop is not None else None
    if own is not None:
        chosen = ChosenPolicy(own, f"the shop {shop_id}'s own")
    else:
        chosen = await _shared_policy(store, configured)
    zone = shop.settings.time_zone if shop is not None else None
    if zone is not None and zone != chosen.policy.time_zone:
        policy = chosen.policy.model_copy(update={"time_zone": zone})
        chosen = ChosenPolicy(policy, f"{chosen.source}, in the shop's time zone {zone}")
    return chosen


async def _shared_policy(
    store: EnginePolicyStore, configured: Callable[[], RecoveryPolicy]
) -> ChosenPolicy:
    """The policy of every shop that has none of its own."""
    published = await store.published()
    if published is not None:
        when = f"{published.published:%Y-%m-%d %H:%M} UTC"
        return ChosenPolicy(published.policy, f"the running engine's, published at {when}")
    return ChosenPolicy(configured(), "this command's configuration: no worker has started yet")


class CachedReportingPolicy:
    """`policy_for_reports` for a process that reports for a long time (the API, which takes no
    override): each shop's choice is kept for `reread_seconds`, then read again from the store
    (so a changed shop policy reaches new checkouts within that time)."""

    def __init__(
        self,
        store: EnginePolicyStore,
        configured: RecoveryPolicy,
        *,
        shops: ShopStore | None = None,
        reread_seconds: float = REREAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._configured = configured
        self._shops = shops
        self._reread_seconds = reread_seconds
        self._clock = clock
        self._chosen: dict[str, tuple[ChosenPolicy, float]] = {}
        """By shop id: the choice and when it expires."""
        # When a choice expires under load, one report reads the store; the others wait for it.
        self._reading = asyncio.Lock()

    async def current(self, shop_id: str = DEFAULT_SHOP) -> ChosenPolicy:
        chosen = self._fresh(shop_id)
        if chosen is not None:
            return chosen
        async with self._reading:
            chosen = self._fresh(shop_id)
            if chosen is None:
                chosen = await policy_for_reports(
                    self._store,
                    override=None,
                    configured=lambda: self._configured,
                    shops=self._shops,
                    shop_id=shop_id,
                )
                before = self._chosen.get(shop_id)
                if before is None or chosen.source != before[0].source:
                    logger.info(
                        "New checkouts of the shop %s get the policy %s: %s",
                        shop_id,
                        chosen.policy.name,
                        chosen.source,
                    )
                self._chosen[shop_id] = (chosen, self._clock() + self._reread_seconds)
        return chosen

    def _fresh(self, shop_id: str) -> ChosenPolicy | None:
        kept = self._chosen.get(shop_id)
        if kept is not None and self._clock() < kept[1]:
            return kept[0]
        return None
