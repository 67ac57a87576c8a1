"""Which variant a checkout gets: deterministic, weighted, and independent of the holdout."""

import uuid
from collections import Counter

from domain.policy import EmailStep
from domain.schedule import in_holdout, stable_bucket
from domain.variants import assign_variant


def _step(*weights: int) -> EmailStep:
    return EmailStep.model_validate(
        {
            "action": "email",
            "delay": "1h",
            "template": "reminder",
            "variants": [
                {"name": f"v{n}", "weight": weight, "subject": f"Subject {n}"}
                for n, weight in enumerate(weights)
            ],
        },
        context={"policy_file": True},
    )


IDS = [str(uuid.UUID(int=n)) for n in range(10_000)]


def test_a_step_without_variants_gets_none() -> None:
    plain = EmailStep.model_validate(
        {"action": "email", "delay": "1h", "template": "reminder"}, context={"policy_file": True}
    )
    assert assign_variant(plain, "any", 0) is None


def test_the_same_checkout_and_step_always_get_the_same_variant() -> None:
    step = _step(1, 1, 1)
    first = [assign_variant(step, checkout_id, 0) for checkout_id in IDS[:500]]
    again = [assign_variant(_step(1, 1, 1), checkout_id, 0) for checkout_id in IDS[:500]]
    assert first == again
    # A known value pins the rule itself: another process, another Python, the same answer.
    chosen = assign_variant(step, "00000000-0000-0000-0000-000000000000", 0)
    assert chosen is not None
    expected = stable_bucket("00000000-0000-0000-0000-000000000000/step-1", 3)
    assert chosen.name == f"v{expected}"


def test_weights_are_respected_over_ten_thousand_ids() -> None:
    step = _step(1, 3, 6)
    counts = Counter(v.name for checkout_id in IDS if (v := assign_variant(step, checkout_id, 0)))
    # Shares 10%, 30%, 60%; a binomial's standard deviation here is at most 0.5 percentage
    # points, so 1.5 points is three of them.
    for name, share in (("v0", 0.1), ("v1", 0.3), ("v2", 0.6)):
        assert abs(counts[name] / len(IDS) - share) < 0.015, (name, counts)


def test_each_step_splits_independently_and_apart_from_the_holdout() -> None:
    step = _step(1, 1)
    at_1 = [assign_variant(step, checkout_id, 0) for checkout_id in IDS]
    at_2 = [assign_variant(step, checkout_id, 1) for checkout_id in IDS]
    same = sum(a == b for a, b in zip(at_1, at_2, strict=True))
    assert abs(same / len(IDS) - 0.5) < 0.03  # not the same split at every step
    # The treated checkouts of a 50% holdout still split evenly.
    treated = [
        v for checkout_id, v in zip(IDS, at_1, strict=True) if not in_holdout(checkout_id, 50)
    ]
    assert abs(sum(v is not None and v.name == "v0" for v in treated) / len(treated) - 0.5) < 0.03


def test_editing_the_list_moves_checkouts_as_documented() -> None:
    # Reordering keeps each variant's share but not each checkout's variant; adding one moves
    # some checkouts too (domain.variants says so).
    forward = _step(1, 1)
    backward = forward.model_copy(update={"variants": list(reversed(forward.variants or []))})
    moved = sum(assign_variant(forward, c, 0) != assign_variant(backward, c, 0) for c in IDS[:1000])
    assert moved > 0
    grown = _step(1, 1, 1)
    changed = sum(
        (a := assign_variant(forward, c, 0)) is not None
        and (b := assign_variant(grown, c, 0)) is not None
        and a.name != b.name
        for c in IDS[:1000]
    )
    assert changed > 0
