"""Which policy a reported checkout gets: the one rule for every command that reports.

The flow keeps the policy it starts with, and the command that reports a checkout is often not
the engine: `checkout-recovery start` in another shell, an import script. So a report takes, in
this order, the policy named on that command (`--policy`, an explicit override), the policy the
running engine's workers published to the store as they started, and only when no worker ever
did, the reporting process's own configured policy.
"""

from collections.abc import Callable
from dataclasses import dataclass

from domain.policy import RecoveryPolicy
from store.engine_policy import EnginePolicyStore


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
