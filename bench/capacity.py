"""What one checkout's flow costs Temporal, counted from recorded workflow histories.

    .venv/bin/python -m bench.capacity [HISTORY.json ...] [--json]

Without arguments it reads every history in tests/workflows/histories/ (each one path of the flow,
recorded by tests/workflows/record_histories.py) and prints, per history: its events, the
Temporal Cloud actions they bill (see ACTION_EVENTS), and the bytes of the payloads it holds.
docs/capacity.md builds its sizing on these figures.
"""

import argparse
import base64
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HISTORIES = Path(__file__).resolve().parent.parent / "tests" / "workflows" / "histories"

# The history events that are a billed action in Temporal Cloud (docs.temporal.io, "Temporal
# Cloud Actions"): a workflow start, each timer, each signal, each activity attempt, and each
# search-attribute upsert except the SDK's own TemporalChangeVersion (which patches write).
# Queries and updates bill too but leave no event: count them from your own callers.
ACTION_EVENTS = {
    "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
    "EVENT_TYPE_TIMER_STARTED",
    "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED",
}
CHANGE_VERSION = "TemporalChangeVersion"


@dataclass(frozen=True)
class HistoryCost:
    name: str
    events: int
    actions: int
    timers: int
    activity_attempts: int
    signals: int
    upserts: int
    payload_bytes: int
    history_bytes: int


def _payload_bytes(value: Any) -> int:
    """The decoded size of every payload's data in an event, wherever it nests."""
    if isinstance(value, dict):
        own = 0
        if "metadata" in value and isinstance(value.get("data"), str):
            own = len(base64.b64decode(value["data"]))
        return own + sum(_payload_bytes(v) for k, v in value.items() if k != "data")
    if isinstance(value, list):
        return sum(_payload_bytes(item) for item in value)
    return 0


def _billed_upsert(event: dict[str, Any]) -> bool:
    fields = event["upsertWorkflowSearchAttributesEventAttributes"]["searchAttributes"]
    return set(fields.get("indexedFields", {})) != {CHANGE_VERSION}


def history_cost(path: Path) -> HistoryCost:
    events: list[dict[str, Any]] = json.loads(path.read_text())["events"]
    kinds = Counter(event["eventType"] for event in events)
    # Each attempt of an activity is an action; a retried one shows its attempt number on the
    # started event (the server writes only the last attempt's started event).
    attempts = sum(
        int(event["activityTaskStartedEventAttributes"].get("attempt", 1))
        for event in events
        if event["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_STARTED"
    )
    upserts = sum(
        1
        for event in events
        if event["eventType"] == "EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"
        and _billed_upsert(event)
    )
    return HistoryCost(
        name=path.stem,
        events=len(events),
        actions=sum(kinds[kind] for kind in ACTION_EVENTS) + attempts + upserts,
        timers=kinds["EVENT_TYPE_TIMER_STARTED"],
        activity_attempts=attempts,
        signals=kinds["EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"],
        upserts=upserts,
        payload_bytes=sum(_payload_bytes(event) for event in events),
        history_bytes=len(json.dumps(events, separators=(",", ":"))),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("histories", nargs="*", type=Path, help="history files (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    paths = args.histories or sorted(HISTORIES.glob("*.json"))
    if not paths:
        sys.exit(f"no histories found in {HISTORIES}")
    costs = [history_cost(path) for path in paths]
    if args.json:
        print(json.dumps([asdict(cost) for cost in costs], indent=2))
        return
    header = ("history", "events", "actions", "timers", "activities", "signals", "upserts")
    print(f"{header[0]:<44}" + "".join(f"{h:>11}" for h in header[1:]) + "  payload KB")
    for cost in costs:
        figures = (
            cost.events,
            cost.actions,
            cost.timers,
            cost.activity_attempts,
            cost.signals,
            cost.upserts,
        )
        print(
            f"{cost.name:<44}"
            + "".join(f"{f:>11}" for f in figures)
            + f"  {cost.payload_bytes / 1024:>10.1f}"
        )


if __name__ == "__main__":
    main()
