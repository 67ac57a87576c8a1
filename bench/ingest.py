"""Ingest rate: reports per second through the HTTP API (30% duplicates) against bare starts.

Both halves run against one freshly started Temporal dev server, with the same concurrency and
no worker polling (only the start path is measured):

- API: `checkout-recovery api` in its own process, as deployed; this process posts to
  /ecom/v1/abandoned-checkout with a manage key. 30% of the reports repeat an earlier checkout,
  which the engine answers from the store without starting anything. The bodies are encoded
  before the clock starts and posted over keep-alive connections by a lean client
  (bench/load_client.py), so that the load generator takes little of the shared CPU. The clock
  stops when every report has its answer and the outbox is empty (every flow started and
  recorded so); a workers' hand-off loop runs meanwhile in this process, as in a deployment;
- baseline: `Client.start_workflow` of a bare workflow with a fresh id per call, from this
  process.

    .venv/bin/python -m bench.ingest [--reports 2000] [--concurrency 32] [--database-url URL]
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from bench.bare_flow import BareFlow
from bench.load_client import post_all
from bench.support import BIN_DIR, Figure, dev_server, write_figures
from domain.access import Scope
from service.handoff import Handoff
from store.api_keys import ApiKeyStore
from store.sql import SqlStore
from tests.ports import free_port
from workers.background import running_in_background
from workers.process_exit import leave

DUPLICATE_SHARE = 0.3
PATH = "/ecom/v1/abandoned-checkout"
TASK_QUEUE = "bench-ingest"


def _bodies(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` report bodies of which DUPLICATE_SHARE repeat an earlier checkout."""
    chooser = random.Random(seed)
    bodies: list[dict[str, Any]] = []
    for _ in range(count):
        if bodies and chooser.random() < DUPLICATE_SHARE:
            bodies.append(chooser.choice(bodies))
            continue
        bodies.append(
            {
                "checkoutId": f"co-{uuid.uuid4()}",
                "buyerInfo": {"email": "buyer@example.com", "visitorId": "v-1"},
                "contactDetails": {"firstName": "Ada"},
                "currency": "EUR",
                "totalPrice": {"amount": "42.00"},
                "lineItems": [{"name": "Shirt", "quantity": 1, "price": {"amount": "42.00"}}],
                "checkoutUrl": "https://shop.example/checkout",
            }
        )
    return bodies


async def _run(calls: list[Callable[[], Awaitable[None]]], concurrency: int) -> float:
    """Seconds to run every call, at most `concurrency` at a time."""
    queue = iter(calls)

    async def lane() -> None:
        for call in queue:
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return time.perf_counter() - started


POLICY = """
name = "bench"
[[steps]]
delay = "1h"
action = "email"
template = "reminder"
"""


@contextlib.asynccontextmanager
async def _api_process(
    client: Client, url: str, folder: Path, port: int
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`checkout-recovery api` as its own process, as it runs in production."""
    policy = folder / "bench-policy.toml"
    policy.write_text(POLICY)
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "CHECKOUT_RECOVERY_DATABASE_URL": url,
        "CHECKOUT_RECOVERY_DATA_DIR": str(folder),
        "CHECKOUT_RECOVERY_API_PORT": str(port),
        "CHECKOUT_RECOVERY_TASK_QUEUE": TASK_QUEUE,
        "CHECKOUT_RECOVERY_POLICY": str(policy),
    }
    with (folder / "api.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(BIN_DIR / "checkout-recovery"), "api", env=env, stderr=log
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)


async def _api_rate(
    client: Client, url: str, folder: Path, reports: int, concurrency: int
) -> float:
    store = SqlStore.from_url(url)
    await store.create_schema()
    _, key = await ApiKeyStore(store.engine).create("bench", frozenset({Scope.MANAGE}))
    port = free_port()
    headers = {"Authorization": f"Bearer {key}"}
    # The workers' hand-off, for whatever the API leaves undelivered (nothing, normally).
    handoff = Handoff(client, store.commands, TASK_QUEUE)
    async with (
        _api_process(client, url, folder, port) as process,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http,
    ):
        await _until_answering(http, process, folder / "api.log")

        async def post(bodies: list[dict[str, Any]]) -> None:
            encoded = [json.dumps(body).encode() for body in bodies]
            await post_all("127.0.0.1", port, PATH, headers, encoded, concurrency)

        await post(_bodies(50, seed=1))  # warm-up
        bodies = _bodies(reports)
        started = time.perf_counter()
        async with running_in_background(handoff.run(), "handoff"):
            await post(bodies)
            await _until_handed_over(store)
        seconds = time.perf_counter() - started
    await store.close()
    return reports / seconds


async def _until_answering(
    http: httpx.AsyncClient, process: asyncio.subprocess.Process, log: Path
) -> None:
    for _ in range(300):
        if process.returncode is not None:
            told = await asyncio.to_thread(log.read_text)
            raise RuntimeError(f"the API process exited:\n{told[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if (await http.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("the API process did not answer within 30 s")


async def _until_handed_over(store: SqlStore) -> None:
    """Until the outbox is empty: every flow started, every start recorded as confirmed."""
    for _ in itertools.count():
        if not (await store.commands.backlog()).count:
            return
        await asyncio.sleep(0.01)


async def _bare_rate(client: Client, starts: int, concurrency: int) -> float:
    def start() -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            await client.start_workflow(
                BareFlow.run, [3600], id=f"bare-{uuid.uuid4()}", task_queue="bench-bare"
            )

        return call

    await _run([start() for _ in range(50)], concurrency)  # warm-up
    seconds = await _run([start() for _ in range(starts)], concurrency)
    return starts / seconds


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--database-url", help="the store (default: a fresh SQLite file)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as folder:
            url = args.database_url or f"sqlite+aiosqlite:///{folder}/ingest.db"
            api = await _api_rate(env.client, url, Path(folder), args.reports, args.concurrency)
        bare = await _bare_rate(env.client, args.reports, args.concurrency)
    print(f"reports through the API ({DUPLICATE_SHARE:.0%} duplicates): {api:8.1f} /s")
    print(f"bare workflow starts (Temporal client):      {bare:8.1f} /s")
    print(f"ratio API/bare: {api / bare:.2f}")
    postgres = (args.database_url or "").startswith("postgresql")
    database = "PostgreSQL" if postgres else "SQLite"
    write_figures(
        args.json,
        [
            Figure(
                "ingest",
                f"{args.reports} reports through the API, {database}",
                api,
                "reports/s",
                bare,
                api / bare,
                "≥ 0.9",
            )
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
    leave(0)  # workers/process_exit.py: the Temporal core's threads and Python's teardown
