"""Which A/B variant of an email step a checkout gets.

The rule: hash the checkout id with the step's number (domain.schedule.stable_bucket, the
holdout's hashing) into one of `sum(weights)` buckets, and walk the variants in their listed
order, each owning `weight` consecutive buckets. So the choice depends only on the checkout, the
step and the step's variants as written: every process, retry and replay agrees, and `policy
check` shows what a worker will send.

The step's number is part of the seed so that a checkout's variant at step 1 says nothing about
its variant at step 2, and so that the split is independent of the holdout (which hashes the id
alone: a seed without the step would give the treated checkouts, whose buckets all lie above the
holdout's, a skewed split).

Editing the list changes assignments: reordering variants, changing a weight, or adding or
removing one moves some checkouts to another variant. Flows already past the step keep what they
were sent (the entry records it); flows started before the edit keep the policy they started
with.
"""

from domain.policy import EmailStep, Variant
from domain.schedule import stable_bucket


def assign_variant(step: EmailStep, checkout_id: str, step_index: int) -> Variant | None:
    """The variant of `step` (at `step_index`, from 0) that `checkout_id` gets; None when the
    step has no variants."""
    if not step.variants:
        return None
    bucket = stable_bucket(
        f"{checkout_id}/step-{step_index + 1}", sum(v.weight for v in step.variants)
    )
    for variant in step.variants:
        if bucket < variant.weight:
            return variant
        bucket -= variant.weight
    raise AssertionError("the buckets cover the weights")  # pragma: no cover
