"""Every benchmark still runs: `./run bench all --quick` on tiny inputs (its figures mean nothing;
no test here times anything)."""

import json
import subprocess
import sys
from pathlib import Path

from bench.all import BENCHMARKS
from tests.support import REPO


def test_bench_all_runs_every_benchmark_and_writes_one_table(tmp_path: Path) -> None:
    output = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.all", "--quick", "--json", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    written = json.loads(output.read_text())
    benchmarks = {figure["benchmark"] for figure in written["figures"]}
    assert benchmarks == {*BENCHMARKS, "capacity"}
    assert written["quick"] is True
    for figure in written["figures"]:
        assert figure["value"] > 0, figure
        if figure["baseline"] is not None:
            assert figure["ratio"] == figure["value"] / figure["baseline"]
        assert figure["figure"] in result.stdout
