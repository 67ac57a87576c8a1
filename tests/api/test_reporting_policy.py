"""The policy the API gives new checkouts: the running engine's, whatever the API's own settings say.

An API process configured with one policy and workers configured with another is a deployment
that happens (a rolling update, an API left on the default): the flows must get the policy of the
engine that runs them. The API keeps its choice a few seconds (service.reporting_policy), so a
report costs no extra store read.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain.access import Scope
from domain.flow import workflow_id_for
from domain.policy import parse_policy
from service.checkouts import CheckoutService
from service.flow_view import read_flow_input
from service.reporting_policy import REREAD_SECONDS, CachedReportingPolicy
from store.api_keys import ApiKeyStore
from store.engine_policy import EnginePolicyStore, PublishedPolicy
from store.sql import SqlStore
from tests.api.stack import BASE, checkout_body
from tests.ports import free_port
from tests.support import SmtpServer, engine_settings, eventually
from workers.api_server import build_app, serving
from workers.settings import Settings
from workers.worker import open_worker

API_OWN = parse_policy(
    {"name": "api-own", "steps": [{"delay": "1h", "action": "email", "template": "reminder"}]},
    "test",
)
ENGINE = parse_policy(
    {"name": "engine", "steps": [{"delay": "2h", "action": "email", "template": "reminder"}]},
    "test",
)


@contextlib.asynccontextmanager
async def _api_alone(
    client: Client, store: SqlStore, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """The API on a loopback port, configured with API_OWN, and no worker: a manager's client."""
    service = CheckoutService(client, store, settings.task_queue)
    _, key = await ApiKeyStore(store.engine).create("policy manager", frozenset({Scope.MANAGE}))
    app = build_app(settings, service, store, API_OWN)
    async with (
        serving(app, settings.api_host, settings.api_port),
        httpx.AsyncClient(
            base_url=settings.public_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as http,
    ):
        yield http


async def _flow_policy(client: Client, http: httpx.AsyncClient) -> str:
    """Report a new checkout through the API; the name of the policy its flow was started with."""
    answer = await http.post(BASE, json=checkout_body())
    assert answer.status_code == 201, answer.text
    handle = client.get_workflow_handle(workflow_id_for(answer.json()["abandonedCheckout"]["id"]))

    async def started_with() -> str | None:
        found = await read_flow_input(handle, client.data_converter)
        return found.policy.name if found else None

    return await eventually(started_with, what="the flow's input")


async def test_new_checkouts_get_the_engine_policy_once_a_worker_published_it(
    dev_server_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, tmp_path: Path
) -> None:
    client = dev_server_env.client
    port = free_port()
    api_settings = engine_settings(
        smtp.port, data_dir=tmp_path, api_port=port, public_url=f"http://127.0.0.1:{port}"
    )
    async with _api_alone(client, store, api_settings) as http:
        # No worker has ever started on this store: the API's own policy is all there is.
        assert await _flow_policy(client, http) == "api-own"

        # A worker configured otherwise (as `worker --policy demo` is) starts and publishes.
        worker_settings = api_settings.model_copy(update={"policy": "demo"})
        async with open_worker(client, worker_settings, store) as worker, worker:
            # The API read the store at its first report; it reads again after REREAD_SECONDS.
            await asyncio.sleep(REREAD_SECONDS)
            assert await _flow_policy(client, http) == "demo"
            assert await _flow_policy(client, http) == "demo"


class _CountedReads(EnginePolicyStore):
    """The real store, counting how often the policy is read."""

    reads = 0

    async def published(self) -> PublishedPolicy | None:
        self.reads += 1
        return await super().published()


async def test_the_choice_is_kept_a_few_seconds_and_read_once_by_concurrent_reports(
    store: SqlStore,
) -> None:
    now = 100.0
    policies = _CountedReads(store.engine)
    cached = CachedReportingPolicy(policies, API_OWN, clock=lambda: now)

    first = await cached.current()
    assert (first.policy, first.source) == (
        API_OWN,
        "this command's configuration: no worker has started yet",
    )
    await policies.publish(ENGINE, "engine.toml")
    now += REREAD_SECONDS - 0.1
    # Within the window, reports take the kept choice: no store read each.
    kept = await asyncio.gather(*(cached.current() for _ in range(20)))
    assert {chosen.policy.name for chosen in kept} == {"api-own"}
    assert policies.reads == 1

    now += 0.1
    # Reports arriving together when the choice expires read the store once between them.
    fresh = await asyncio.gather(*(cached.current() for _ in range(20)))
    assert {chosen.policy.name for chosen in fresh} == {"engine"}
    assert fresh[0].source.startswith("the running engine's, published at ")
    assert policies.reads == 2
