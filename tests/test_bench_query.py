"""The query benchmark runs (not a timed test): tiny inputs, both databases, one row per pattern."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = (
    "status_created",
    "email",
    "contact_id",
    "checkout_id",
    "cart_id",
    "email_prefix",
    "recovered_range",
    "cursor_walk",
)


def test_bench_query_prints_a_row_per_pattern_and_database():
    command = [sys.executable, "-m", "bench.query", "--checkouts", "200", "--requests", "5"]
    run = subprocess.run(
        [*command, "--walk", "3"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    table = run.stdout.split("| database | pattern |", 1)[1]
    rows = [line.split("|")[1:3] for line in table.splitlines() if line.startswith("| ")]
    found = {(db.strip(), pattern.strip()) for db, pattern in rows}
    expected = {(db, p) for db in ("SQLite", "PostgreSQL") for p in PATTERNS}
    assert found == expected, run.stdout
    for line in table.splitlines()[2:]:
        if line.startswith("| "):
            cells = [c.strip() for c in line.split("|")[1:-1]]
            assert int(cells[2]) > 0, line  # each pattern finds rows
            assert all(float(c) > 0 for c in cells[3:]), line
