"""Ingest rate: reports per second through the HTTP API (30% duplicates) against bare starts.

Both halves run in one process against one freshly started Temporal dev server, with the same
concurrency and no worker polling (only the start path is measured):

- API: POST /ecom/v1/abandoned-checkout with a manage key; 30% of the reports repeat an earlier
  checkout, which the engine answers from the store without starting anything;
- baseline: `Client.start_workflow` of a bare workflow with a fresh id per call.

    .venv/bin/python -m bench.ingest [--reports 2000] [--concurrency 32] [--database-url URL]
"""

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from bench.bare_flow import BareFlow
from bench.support import dev_server, free_port
from domain.access import Scope
from domain.policy import parse_policy
from service.checkouts import CheckoutService
from store.api_keys import ApiKeyStore
from store.sql import SqlStore
from workers.api_server import build_app, serving
from workers.settings import Settings

DUPLICATE_SHARE = 0.3


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


async def _api_rate(client: Client, url: str, reports: int, concurrency: int) -> float:
    store = SqlStore.from_url(url)
    await store.create_schema()
    _, key = await ApiKeyStore(store.engine).create("bench", frozenset({Scope.MANAGE}))
    port = free_port()
    settings = Settings(data_dir=Path(tempfile.mkdtemp()), api_port=port)
    policy = parse_policy(
        {"name": "b", "steps": [{"delay": "1h", "action": "email", "template": "reminder"}]}, "b"
    )
    app = build_app(settings, CheckoutService(client, store, "bench-ingest"), store, policy)
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with (
        serving(app, "127.0.0.1", port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as http,
    ):

        def report(body: dict[str, Any]) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                response = await http.post(
                    "/ecom/v1/abandoned-checkout", json=body, headers=headers
                )
                assert response.status_code in (200, 201), response.text

            return call

        await _run([report(b) for b in _bodies(50, seed=1)], concurrency)  # warm-up
        seconds = await _run([report(b) for b in _bodies(reports)], concurrency)
    await store.close()
    return reports / seconds


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
    args = parser.parse_args(argv)
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as folder:
            url = args.database_url or f"sqlite+aiosqlite:///{folder}/ingest.db"
            api = await _api_rate(env.client, url, args.reports, args.concurrency)
        bare = await _bare_rate(env.client, args.reports, args.concurrency)
    print(f"reports through the API ({DUPLICATE_SHARE:.0%} duplicates): {api:8.1f} /s")
    print(f"bare workflow starts (Temporal client):      {bare:8.1f} /s")
    print(f"ratio API/bare: {api / bare:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
