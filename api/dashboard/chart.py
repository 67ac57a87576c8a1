"""The daily chart's geometry, drawn as inline SVG by the template: no script, nothing fetched."""

from dataclasses import dataclass

from store.stats import DayStats

WIDTH = 720
HEIGHT = 220
_LEFT = 40  # room for the y-axis figures
_BOTTOM = 24  # room for the dates
_TOP = 10
_MAX_LABELS = 8


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    abandoned_y: float
    abandoned_height: float
    recovered_y: float
    recovered_height: float
    title: str
    """The hover text: the day and both figures."""


@dataclass(frozen=True)
class Label:
    x: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    baseline: float
    top: int
    peak: int
    bars: list[Bar]
    labels: list[Label]


def daily_chart(days: list[DayStats]) -> Chart | None:
    """Each day's abandoned checkouts as a bar, the recovered part of them drawn over it."""
    if not days:
        return None
    peak = max(1, *(d.abandoned for d in days))
    plot_height = HEIGHT - _TOP - _BOTTOM
    baseline = HEIGHT - _BOTTOM
    slot = (WIDTH - _LEFT) / len(days)
    width = max(1.0, slot * 0.8)
    bars = []
    for index, day in enumerate(days):
        abandoned = plot_height * day.abandoned / peak
        recovered = plot_height * day.recovered / peak
        bars.append(
            Bar(
                x=round(_LEFT + index * slot + (slot - width) / 2, 2),
                width=round(width, 2),
                abandoned_y=round(baseline - abandoned, 2),
                abandoned_height=round(abandoned, 2),
                recovered_y=round(baseline - recovered, 2),
                recovered_height=round(recovered, 2),
                title=f"{day.day:%Y-%m-%d}: {day.abandoned} abandoned, {day.recovered} recovered",
            )
        )
    every = max(1, -(-len(days) // _MAX_LABELS))  # ceiling division: at most _MAX_LABELS dates
    labels = [
        Label(x=round(_LEFT + (i + 0.5) * slot, 2), text=f"{days[i].day:%m-%d}")
        for i in range(0, len(days), every)
    ]
    return Chart(WIDTH, HEIGHT, _LEFT, baseline, _TOP, peak, bars, labels)
