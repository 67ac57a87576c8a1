"""Confidence intervals for recovery rates and for the difference of two, as the A/B stats use.

A recovery rate is a proportion (recoveries / sends). Its 95% interval is Wilson's score interval
(Wilson 1927), which stays inside [0, 1] and keeps its coverage for the small counts and the rates
near 0 that recovery emails have; the textbook Wald interval (p ± 1.96·√(p(1-p)/n)) does neither.
The difference of two independent rates gets Newcombe's hybrid score interval (Newcombe 1998,
"Interval estimation for the difference between independent proportions", method 10), built from
the two Wilson intervals. An interval of a difference that excludes 0 says the variants differ at
the 5% level; one that includes 0 says the data cannot tell them apart yet.
"""

from dataclasses import dataclass
from math import sqrt
from statistics import NormalDist

Z_95 = NormalDist().inv_cdf(0.975)
"""The standard normal quantile of a two-sided 95% interval (1.95996...)."""


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> Interval | None:
    """Wilson's score interval for successes / trials; None without trials (no rate)."""
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes out of {trials} trials")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z / denominator * sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    # Exactly 0 and 1 at the edges, not a rounding error away from them.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Interval(low, high)


def difference_interval(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, z: float = Z_95
) -> Interval | None:
    """Newcombe's hybrid score interval for rate a minus rate b; None when either has no
    trials."""
    interval_a = wilson_interval(successes_a, trials_a, z)
    interval_b = wilson_interval(successes_b, trials_b, z)
    if interval_a is None or interval_b is None:
        return None
    p_a, p_b = successes_a / trials_a, successes_b / trials_b
    below = sqrt((p_a - interval_a.low) ** 2 + (interval_b.high - p_b) ** 2)
    above = sqrt((interval_a.high - p_a) ** 2 + (p_b - interval_b.low) ** 2)
    return Interval(max(-1.0, p_a - p_b - below), min(1.0, p_a - p_b + above))
