"""What the benchmarks share: a Temporal dev server, percentiles, and the figures they report."""

import contextlib
import json
import statistics
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.ports import free_port
from workers.temporal_client import DATA_CONVERTER

BIN_DIR = Path(sys.executable).parent


@contextlib.asynccontextmanager
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=DATA_CONVERTER,
        dev_server_existing_path=str(BIN_DIR / "temporal"),
        ui=False,
        port=free_port(),  # outside the ephemeral range: tests/ports.py says why
    )
    try:
        yield env
    finally:
        await env.shutdown()


def p50_p99(samples_ms: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return statistics.median(samples_ms), cuts[98]


@dataclass(frozen=True)
class Figure:
    """One measured figure, beside the baseline measured in the same run (`./run bench all`
    gathers these from every benchmark into one table)."""

    benchmark: str
    figure: str
    value: float
    unit: str
    baseline: float | None = None
    """The same quantity for the baseline (bare Temporal, raw SQL, ...), when there is one."""
    ratio: float | None = None
    """value / baseline."""
    target: str = ""
    """What the ratio (or the value, without a baseline) should be, as "≥ 0.9" or "≤ 20 ms"."""


def write_figures(path: Path | None, figures: Sequence[Figure]) -> None:
    """Write a benchmark's figures as JSON (a list of objects) when it was asked to."""
    if path is not None:
        path.write_text(json.dumps([asdict(figure) for figure in figures], indent=2))


def read_figures(path: Path) -> list[Figure]:
    return [Figure(**row) for row in json.loads(path.read_text())]
