"""A running stack for the "see why" and "find fast" browser tests: its second email never
goes out (its condition fails), and its third is an hour away, so the page has a next step."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page
from temporalio.client import Client

from domain.policy import parse_policy
from store.sql import SqlStore
from tests.dashboard.stack import DashboardStack
from tests.support import sample_checkout_data

API = "/ecom/v1/abandoned-checkout"

POLICY = parse_policy(
    {
        "name": "dashboard-why",
        "listen_window": "1d",
        "frequency_cap": {"window": "0s"},
        "steps": [
            {"delay": "1s", "action": "email", "template": "reminder"},
            {
                "delay": "2s",
                "action": "email",
                "template": "last_chance",
                "conditions": {"min_total": "100000.00"},
            },
            {"delay": "1h", "action": "email", "template": "last_chance"},
        ],
    },
    "test",
)


@asynccontextmanager
async def why_stack(
    client: Client, store: SqlStore, data_dir: Path
) -> AsyncIterator[DashboardStack]:
    async with DashboardStack.running(
        client,
        store=store,
        data_dir=data_dir,
        maildir=data_dir / "mail",
        policy=POLICY,
        serve=True,
        key_names="dashboard",
        temporal_ui_url="http://temporal-ui.test:8233",
    ) as running:
        yield running


async def log_in(page: Page, key: str) -> None:
    await page.goto("/dashboard/login")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Log in").click()


async def report(dashboard: DashboardStack, name: str, **overrides: Any) -> str:
    body: dict[str, Any] = sample_checkout_data(
        buyerInfo={"email": f"{name}@example.com", "visitorId": f"visitor-{name}"},
        contactDetails={"firstName": name.title()},
    )
    body.update(overrides)
    async with httpx.AsyncClient(base_url=dashboard.base_url) as http:
        answer = await http.post(API, json=body, headers=dashboard.as_manager())
    assert answer.status_code == 201, answer.text
    return str(answer.json()["abandonedCheckout"]["id"])
