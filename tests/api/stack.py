"""A whole running service for API tests: real Temporal, worker, SMTP on loopback, HTTP on a port."""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from domain.access import Scope
from domain.policy import RecoveryPolicy, parse_policy
from store.api_keys import ApiKeyStore
from store.sql import SqlStore
from tests.ports import free_port
from tests.support import SmtpServer, engine_settings, running_engine, sample_checkout_data
from workers.api_server import build_app, serving
from workers.settings import Settings

BASE = "/ecom/v1/abandoned-checkout"

# The first email goes out a second after the report; the second one never comes in a test.
FAST_POLICY = parse_policy(
    {
        "name": "api-test",
        "listen_window": "1h",
        # The API tests report many checkouts of one sample buyer; the cap would hold back all
        # but the first one's emails.
        "frequency_cap": {"window": "0s"},
        "steps": [
            {"delay": "1s", "action": "email", "template": "reminder"},
            {"delay": "1h", "action": "email", "template": "last_chance"},
        ],
    },
    "test",
)


@dataclass
class Stack:
    http: httpx.AsyncClient
    store: SqlStore
    settings: Settings
    manage_key: str
    read_key: str

    def as_manager(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.manage_key}"}

    def as_reader(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.read_key}"}

    async def report(self, checkout: dict[str, Any]) -> httpx.Response:
        return await self.http.post(BASE, json=checkout, headers=self.as_manager())


@contextlib.asynccontextmanager
async def running_stack(
    client: Client,
    store: SqlStore,
    smtp: SmtpServer,
    data_dir: Path,
    policy: RecoveryPolicy = FAST_POLICY,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    port = free_port()
    settings = engine_settings(
        smtp.port,
        data_dir=data_dir,
        api_port=port,
        public_url=f"http://127.0.0.1:{port}",
        **overrides,
    )
    keys = ApiKeyStore(store.engine)
    _, manage_key = await keys.create("test manager", frozenset({Scope.MANAGE}))
    _, read_key = await keys.create("test reader", frozenset({Scope.READ}))
    async with running_engine(client, store, settings) as service:
        app = build_app(settings, service, store, policy)
        async with (
            serving(app, "127.0.0.1", port),
            httpx.AsyncClient(base_url=settings.public_url, timeout=30) as http,
        ):
            yield Stack(http, store, settings, manage_key, read_key)


def checkout_body(**overrides: Any) -> dict[str, Any]:
    """A report body as a shop's service sends it (REST spelling)."""
    return sample_checkout_data(**overrides)
