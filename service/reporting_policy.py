"""Which policy a reported checkout gets: the one rule for every command that reports.

The flow keeps the policy it starts with, and the command that reports a checkout is often not
the engine: `checkout-recovery start` in another shell, an import script. So a report takes, in
this order, the policy named on that command (`--policy`, an explicit override), the policy the
running engine's workers published to the store as they started, and only when no worker ever
did, the reporting process's own configured policy. The API, which reports for as long as it
runs, keeps its choice a few seconds (CachedReportingPolicy) rather than read it per report.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from domain.policy import RecoveryPolicy
from store.engine_policy import EnginePolicyStore

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
) -> ChosenPolicy:
    """`configured` is called only when it is needed (it loads and checks templates)."""
    if override is not None:
        return ChosenPolicy(override, "--policy override")
    published = await store.published()
    if published is not None:
        when = f"{published.published:%Y-%m-%d %H:%M} UTC"
        return ChosenPolicy(published.policy, f"the running engine's, published at {when}")
    return ChosenPolicy(configured(), "this command's configuration: no worker has started yet")


class CachedReportingPolicy:
    """`policy_for_reports` for a process that reports for a long time (the API, which takes no
    override): the choice is kept for `reread_seconds`, then read again from the store."""

    def __init__(
        self,
        store: EnginePolicyStore,
        configured: RecoveryPolicy,
        *,
        reread_seconds: float = REREAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._configured = configured
        self._reread_seconds = reread_seconds
        self._clock = clock
        self._chosen: ChosenPolicy | None = None
        self._expires = 0.0
        # When the choice expires under load, one report reads the store; the others wait for it.
        self._reading = asyncio.Lock()

    async def current(self) -> ChosenPolicy:
        chosen = self._fresh()
        if chosen is not None:
            return chosen
        async with self._reading:
            chosen = self._fresh()
            if chosen is None:
                chosen = await policy_for_reports(
                    self._store, override=None, configured=lambda: self._configured
                )
                if self._chosen is None or chosen.source != self._chosen.source:
                    logger.info(
                        "New checkouts get the policy %s: %s", chosen.policy.name, chosen.source
                    )
                self._chosen, self._expires = chosen, self._clock() + self._reread_seconds
        return chosen

    def _fresh(self) -> ChosenPolicy | None:
        if self._chosen is not None and self._clock() < self._expires:
            return self._chosen
        return None
