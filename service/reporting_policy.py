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

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from domain.policy import RecoveryPolicy
from domain.shops import DEFAULT_SHOP
from store.engine_policy import EnginePolicyStore
from store.kept_reads import KeptReads
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
    (so a changed shop policy reaches new checkouts within that time; store.kept_reads)."""

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
        self._sources: dict[str, str] = {}
        """By shop id: why its last choice was made, to log only a change."""
        self._kept = KeptReads(self._choose, seconds=reread_seconds, clock=clock)

    async def current(self, shop_id: str = DEFAULT_SHOP) -> ChosenPolicy:
        return await self._kept.get(shop_id)

    async def _choose(self, shop_id: str) -> ChosenPolicy:
        chosen = await policy_for_reports(
            self._store,
            override=None,
            configured=lambda: self._configured,
            shops=self._shops,
            shop_id=shop_id,
        )
        if self._sources.get(shop_id) != chosen.source:
            logger.info(
                "New checkouts of the shop %s get the policy %s: %s",
                shop_id,
                chosen.policy.name,
                chosen.source,
            )
            self._sources[shop_id] = chosen.source
        return chosen
