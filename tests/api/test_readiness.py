"""`/readyz`: 200 when the store, Temporal and the hand-off answer; 503 naming what did not.

Each failure is real: a Temporal port nothing listens on, a database that cannot be reached, a
command that has waited in the outbox for an hour. `/healthz` (liveness) answers throughout.
"""

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update
from temporalio.client import Client

from domain.policy import RecoveryPolicy
from service.checkouts import CheckoutService
from store.schema import flow_commands
from store.sql import SqlStore
from tests.api.stack import FAST_POLICY, Stack
from tests.ports import free_port
from tests.support import engine_settings, sample_checkout
from workers.api_server import build_app
from workers.settings import Settings
from workers.temporal_client import DATA_CONVERTER


async def test_ready_when_the_store_temporal_and_the_handoff_answer(stack: Stack) -> None:
    answer = await stack.http.get("/readyz")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "store": True,
        "temporal": True,
        "handoff_backlog": True,
    }


async def test_a_temporal_that_does_not_answer_is_named(store: SqlStore, tmp_path: Path) -> None:
    async with _api(store, tmp_path) as http:
        answer = await http.get("/readyz")
        assert (await http.get("/healthz")).status_code == 200
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["status"] == "unavailable"
    assert body["failed"] == ["temporal"]
    assert body["checks"]["store"]["ok"] is True
    assert body["checks"]["temporal"]["detail"]


async def test_a_command_waiting_too_long_for_temporal_is_named(
    store: SqlStore, tmp_path: Path
) -> None:
    async with _api(store, tmp_path, readiness_backlog_seconds=600) as (http, service):
        # Temporal is away: the report is kept, its start waits in the outbox.
        await service.report(sample_checkout(), FAST_POLICY)
        young = (await http.get("/readyz")).json()
        async with store.engine.begin() as conn:
            await conn.execute(
                update(flow_commands).values(created_date=datetime.now(UTC) - timedelta(hours=1))
            )
        old = (await http.get("/readyz")).json()
    assert young["checks"]["handoff_backlog"]["ok"] is True
    assert "1 command(s)" in young["checks"]["handoff_backlog"]["detail"]
    assert old["failed"] == ["temporal", "handoff_backlog"]
    detail = old["checks"]["handoff_backlog"]["detail"]
    assert re.fullmatch(r"oldest of 1 command\(s\) has waited 36\d\ds \(more than 600s\)", detail)


async def test_a_store_that_does_not_answer_is_named_without_its_password(
    tmp_path: Path,
) -> None:
    unreachable = SqlStore.from_url(
        f"postgresql+asyncpg://engine:s3cret-pw@127.0.0.1:{free_port()}/recovery"
    )
    try:
        async with _api(unreachable, tmp_path) as http:
            answer = await http.get("/readyz")
    finally:
        await unreachable.close()
    assert answer.status_code == 503
    body = answer.json()
    assert "store" in body["failed"] and "handoff_backlog" in body["failed"]
    assert body["checks"]["store"]["detail"]
    assert "s3cret-pw" not in answer.text


@contextlib.asynccontextmanager
async def _api(store: SqlStore, tmp_path: Path, **settings: Any) -> AsyncIterator[Any]:
    """The API app in this process, on a store, with a Temporal client for a dead port.

    Yields the HTTP client, or (client, service) when settings are given."""
    config: Settings = engine_settings(free_port(), data_dir=tmp_path, **settings)
    client = await Client.connect(
        f"127.0.0.1:{free_port()}", lazy=True, data_converter=DATA_CONVERTER
    )
    service = CheckoutService(client, store, config.task_queue)
    policy: RecoveryPolicy = FAST_POLICY
    app = build_app(config, service, store, policy)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield (http, service) if settings else http
