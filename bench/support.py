"""What the benchmarks share: a Temporal dev server, an HTTP service on a free port, percentiles."""

import contextlib
import statistics
import sys
from collections.abc import AsyncIterator
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
