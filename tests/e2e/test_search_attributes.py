"""Flows publish their status and step; `temporal workflow list --query` finds them by status."""

import asyncio
import json
import subprocess
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from domain.flow import workflow_id_for
from domain.policy import parse_policy
from service.checkouts import CheckoutService
from store.sql import SqlStore
from tests.support import BIN_DIR, RunningStack, SmtpServer, eventually, sample_checkout
from workers.search_attributes import search_attributes_registered

POLICY = parse_policy(
    {
        "name": "search-attributes",
        "listen_window": "2s",
        "frequency_cap": {"window": "0s"},
        "steps": [
            {"delay": "1s", "action": "email", "template": "reminder"},
            {"delay": "1h", "action": "email", "template": "last_chance"},
        ],
    },
    "test",
)


def _temporal_list(env: WorkflowEnvironment, query: str) -> list[str]:
    """Workflow ids as the Temporal CLI lists them for a visibility query."""
    address = env.client.service_client.config.target_host
    output = subprocess.run(
        [
            str(BIN_DIR / "temporal"),
            "workflow",
            "list",
            "--address",
            address,
            "--query",
            query,
            "--output",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    listed = json.loads(output) if output.strip() else []
    return sorted(item["execution"]["workflowId"] for item in listed)


async def test_a_query_by_status_returns_the_expected_flows(
    dev_server_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, tmp_path: Path
) -> None:
    env = dev_server_env
    assert await search_attributes_registered(env.client)
    async with RunningStack.running(env.client, store=store, smtp=smtp) as stack:
        plain, queue = stack.service, stack.settings.task_queue
        service = CheckoutService(env.client, store, queue, search_attributes=True)
        ids = {}
        for name in ("recovered", "cancelled", "running"):
            # Three buyers: a purchase would stop the same buyer's other flows.
            buyer = {"email": f"{name}@example.com", "visitorId": name}
            outcome = await service.report(sample_checkout(buyerInfo=buyer), POLICY)
            ids[name] = outcome.checkout_id
        await eventually(lambda: _sent(smtp, 3), what="three first emails")
        await service.recover(ids["recovered"], order_id="o-1")
        await plain.cancel(ids["cancelled"])

        def listed(query: str, expected: list[str]):
            async def probe() -> bool:
                found = await asyncio.to_thread(
                    _temporal_list, env, f"TaskQueue = '{queue}' AND {query}"
                )
                return found == sorted(workflow_id_for(ids[n]) for n in expected)

            return probe

        await eventually(listed("CheckoutRecoveryStatus = 'RECOVERED'", ["recovered"]))
        await eventually(listed("CheckoutRecoveryStatus = 'CANCELLED'", ["cancelled"]))
        await eventually(
            listed("CheckoutRecoveryStatus = 'ABANDONED' AND CheckoutRecoveryStep = 1", ["running"])
        )
        await plain.cancel(ids["running"])


async def _sent(smtp: SmtpServer, count: int) -> bool:
    return len(smtp.handler.messages) >= count
