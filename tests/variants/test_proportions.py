"""The interval math, against the worked examples Newcombe published (Statistics in Medicine
17, 1998: "Two-sided confidence intervals for the single proportion", Table I, method 3, and
"Interval estimation for the difference between independent proportions", Table II, method 10)."""

import pytest

from domain.proportions import Z_95, difference_interval, wilson_interval


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval(successes: int, trials: int, low: float, high: float) -> None:
    interval = wilson_interval(successes, trials)
    assert interval is not None
    assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [
        ((56, 70), (48, 80), 0.0524, 0.3339),
        ((9, 10), (3, 10), 0.1705, 0.8090),
        ((5, 56), (0, 29), -0.0381, 0.1926),
        ((0, 10), (0, 20), -0.1611, 0.2775),
        ((10, 10), (0, 20), 0.6791, 1.0),
    ],
)
def test_newcombe_difference_interval(
    a: tuple[int, int], b: tuple[int, int], low: float, high: float
) -> None:
    interval = difference_interval(*a, *b)
    assert interval is not None
    assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)


def test_edges() -> None:
    assert round(Z_95, 4) == 1.96
    assert wilson_interval(0, 0) is None and difference_interval(1, 2, 0, 0) is None
    everything = wilson_interval(7, 7)
    assert everything is not None and everything.high == 1.0 and everything.low < 1.0
    with pytest.raises(ValueError, match="3 successes out of 2"):
        wilson_interval(3, 2)
