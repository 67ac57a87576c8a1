"""Every benchmark on its defaults, one after another, and one table of what they measured.

    ./run bench all [--quick] [--json FILE]

Each benchmark runs as its own process (so one's servers and caches never warm the next) and
writes its figures as JSON; this gathers them, prints one table, and writes them all to FILE
(default bench-results.json). --quick runs each on tiny inputs, to check they still work (CI does
that); its figures mean nothing.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.capacity import HISTORIES, history_cost
from bench.support import Figure, read_figures

REPO = Path(__file__).resolve().parent.parent

# Each benchmark's module and its arguments: on its defaults, and on tiny inputs.
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "throughput": ([], ["--checkouts", "4", "--warmup", "2"]),
    "ingest": ([], ["--reports", "60"]),
    "memory": ([], ["--flows", "50"]),
    "query": ([], ["--checkouts", "200", "--requests", "5", "--walk", "3"]),
    "smtp": ([], ["--emails", "50"]),
    "timers": ([], ["--rate", "5", "--minutes", "0.1"]),
}


def _run(name: str, arguments: list[str], folder: Path) -> list[Figure]:
    output = folder / f"{name}.json"
    command = [sys.executable, "-m", f"bench.{name}", *arguments, "--json", str(output)]
    print(f"==> {' '.join(command[1:])}", file=sys.stderr, flush=True)
    # Its own table goes to our stderr, so the combined table below stays the only stdout.
    subprocess.run(command, cwd=REPO, check=True, stdout=sys.stderr)
    return read_figures(output)


def _capacity() -> Figure:
    cost = history_cost(HISTORIES / "full_default_policy.json")
    return Figure("capacity", "Temporal actions per checkout, default policy", cost.actions, "")


def _print_table(figures: list[Figure]) -> None:
    print(f"{'benchmark':<11} {'figure':<52} {'value':>14} {'baseline':>10} {'ratio':>7}  target")
    for f in figures:
        baseline = f"{f.baseline:.1f}" if f.baseline is not None else "-"
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "-"
        value = f"{f.value:.1f} {f.unit}".strip()
        print(f"{f.benchmark:<11} {f.figure:<52} {value:>14} {baseline:>10} {ratio:>7}  {f.target}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs: a smoke run")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="repeatable")
    args = parser.parse_args(argv)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-all-") as folder:
        for name in args.only or BENCHMARKS:
            defaults, tiny = BENCHMARKS[name]
            figures += _run(name, tiny if args.quick else defaults, Path(folder))
    figures.append(_capacity())
    _print_table(figures)
    cores = len(os.sched_getaffinity(0))
    machine = f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"
    print(f"\n{machine}; figures also in {args.json}", file=sys.stderr)
    args.json.write_text(
        json.dumps(
            {
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine,
                "quick": args.quick,
                "figures": [asdict(f) for f in figures],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
