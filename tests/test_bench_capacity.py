"""bench.capacity counts what docs/capacity.md says a checkout costs Temporal."""

import json
import subprocess
import sys

from bench.capacity import HISTORIES, history_cost
from tests.support import REPO


def test_the_default_policy_costs_eight_actions_as_docs_capacity_says() -> None:
    cost = history_cost(HISTORIES / "full_default_policy.json")
    # 1 start, 4 timers (three steps, the listen window), 3 activity attempts.
    assert (cost.events, cost.timers, cost.activity_attempts, cost.signals) == (43, 4, 3, 0)
    assert cost.actions == 8
    assert "| billed actions | 8:" in (REPO / "docs" / "capacity.md").read_text()


def test_signals_and_published_search_attributes_are_billed_but_change_versions_are_not() -> None:
    cost = history_cost(HISTORIES / "search_attributes_published.json")
    # The history holds three upserts; the first only sets TemporalChangeVersion (a patch).
    assert (cost.upserts, cost.signals) == (2, 1)
    assert cost.actions == 1 + cost.timers + cost.activity_attempts + cost.signals + cost.upserts


def test_the_script_prints_every_history_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.capacity", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = [row["name"] for row in json.loads(result.stdout)]
    assert sorted(names) == sorted(path.stem for path in HISTORIES.glob("*.json"))
