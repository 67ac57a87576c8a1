"""A whole running service for API tests: real Temporal, worker, SMTP on loopback, HTTP on a port."""

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from domain.policy import RecoveryPolicy, parse_policy
from store.sql import SqlStore
from tests.support import RunningStack, SmtpServer, sample_checkout_data

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


class Stack(RunningStack):
    async def report(self, checkout: dict[str, Any]) -> httpx.Response:
        return await self.http.post(BASE, json=checkout, headers=self.as_manager())


def running_stack(
    client: Client,
    store: SqlStore,
    smtp: SmtpServer,
    data_dir: Path,
    policy: RecoveryPolicy = FAST_POLICY,
    **overrides: Any,
) -> AbstractAsyncContextManager[Stack]:
    return Stack.running(
        client, store=store, smtp=smtp, data_dir=data_dir, policy=policy, serve=True, **overrides
    )


def checkout_body(**overrides: Any) -> dict[str, Any]:
    """A report body as a shop's service sends it (REST spelling)."""
    return sample_checkout_data(**overrides)
