"""Replicas: two workers and two API processes against one Temporal and one PostgreSQL.

Every part is its own OS process (tests/e2e/processes.py), each with a data folder of its own, so
the secrets they share come from the environment alone. 300 checkouts are reported through both
APIs, two webhook subscribers listen, and one worker and one API are SIGKILLed mid-run and started
again. Then, checked from outside as an operator would (the SMTP server's mail, Temporal's list
of workflows, the subscribers' deliveries, the processes' logs):

- every email step reached its buyer exactly once (0 duplicates, 0 lost);
- each checkout has exactly one flow;
- every event reached each subscriber (by its id: at-least-once, so a redelivery is allowed);
- the four processes starting together on the fresh database ran each migration once.
"""

import asyncio
import base64
import contextlib
import dataclasses
import json
import re
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from fastapi import FastAPI, Request, Response
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus

from activities.email_message import message_id_for
from domain.activity import ActivityType, NotSentReason
from domain.flow import WORKFLOW_NAME, step_key, workflow_id_for
from domain.steps import SEND_HEARTBEAT_TIMEOUT
from store.migrate import MIGRATION_APPLIED, alembic_config
from store.schema import checkouts, events
from store.sql import SqlStore
from tests.api.test_events import Receiver
from tests.e2e.processes import (
    ApiProcess,
    EngineConfig,
    PartProcess,
    TemporalServer,
    TimedSmtpServer,
    WorkerProcess,
    create_api_key,
    timed_smtp_server,
)
from tests.e2e.test_handoff_faults import _report_body
from tests.ports import free_port
from tests.postgres import PostgresServer
from tests.support import body_text
from workers.api_server import serving

REPORT = "/ecom/v1/abandoned-checkout"
SUBSCRIPTIONS = "/ecom/v1/abandoned-checkout-subscriptions"
CHECKOUTS = 300
CONCURRENCY = 16
RECOVER_EVERY = 10
"""Every 10th checkout is recovered at once after its report: a `recovered` event, no emails."""
EMAIL_STEPS = (0, 1)
STEP_DELAYS = (5, 5 + int(SEND_HEARTBEAT_TIMEOUT.total_seconds()) + 25)
"""The second step comes well after a first-step send caught on the killed worker is noticed (by
its missing heartbeat, SEND_HEARTBEAT_TIMEOUT) and retried on the other worker."""
LISTEN_WINDOW = 3
POLICY = f"""
name = "replicas"
listen_window = "{LISTEN_WINDOW}s"
[frequency_cap]
window = "0s"
[[steps]]
delay = "{STEP_DELAYS[0]}s"
action = "email"
template = "reminder"
[[steps]]
delay = "{STEP_DELAYS[1]}s"
action = "email"
template = "last_chance"
"""
KILL_WORKER_AFTER_EMAILS = 60
"""Emails received before one worker is SIGKILLed: first steps are sending, reports still come."""
KILL_API_AFTER = 180
"""Acknowledged reports before one API is SIGKILLed."""
MAIL_DOMAIN = "shop.test"


@pytest.fixture
def smtp() -> Any:
    with timed_smtp_server() as server:
        yield server


@dataclass
class Subscriber(Receiver):
    """A webhook receiver (tests/api/test_events.py's, which checks the signature) that also
    counts every delivery of each event id."""

    deliveries: Counter[str] = field(default_factory=Counter)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.attempts += 1
            body = await request.body()
            if not self.secret or not self.verify(dict(request.headers), body):
                self.bad_signatures += 1
                return Response(status_code=400)
            event_id = request.headers["webhook-id"]
            self.deliveries[event_id] += 1
            self.events.setdefault(event_id, json.loads(body))
            return Response(status_code=204)

        return app


@dataclass
class Replicas:
    temporal: TemporalServer
    apis: list[ApiProcess]
    workers: list[WorkerProcess]
    client: Client

    @property
    def processes(self) -> list[PartProcess]:
        return [
            self.temporal.process,
            *(a.process for a in self.apis),
            *(w.process for w in self.workers),
        ]


@dataclass
class Run:
    """What the callers saw."""

    acknowledged: dict[int, str] = field(default_factory=dict)
    """report number -> the checkout id its 2xx named."""
    by_api: Counter[int] = field(default_factory=Counter)
    recovered_at: dict[str, datetime] = field(default_factory=dict)
    kills: list[str] = field(default_factory=list)
    retries: int = 0
    reporting_seconds: float = 0.0


def _shared_settings() -> dict[str, str]:
    """The secrets every process gets, and the only way it gets them: no two processes share a
    data folder. (The link signing secret is EngineConfig's own.)"""
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    return {
        "CHECKOUT_RECOVERY_DASHBOARD_SESSION_SECRET": secrets.token_urlsafe(32),
        "CHECKOUT_RECOVERY_WEBHOOK_SECRET_KEYS": f"replicas:{key}",
        "CHECKOUT_RECOVERY_HANDOFF_INTERVAL_SECONDS": "0.5",
    }


@dataclass
class _Stack:
    replicas: Replicas
    configs: list[EngineConfig]
    api_key: str


@contextlib.asynccontextmanager
async def _replicas(
    tmp_path: Path, postgres: PostgresServer, smtp: TimedSmtpServer
) -> AsyncIterator[_Stack]:
    log_dir = tmp_path / "logs"
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY)
    temporal = TemporalServer(log_dir / "temporal", tmp_path / "temporal.db")
    base = EngineConfig(
        temporal_address=temporal.address,
        database_url=postgres.create_database(),
        data_dir=tmp_path / "data-unused",
        policy_file=policy_file,
        smtp_port=smtp.port,
        extra=_shared_settings(),
    )
    api_configs = [
        dataclasses.replace(base, data_dir=tmp_path / f"data-api-{n}", api_port=free_port())
        for n in (1, 2)
    ]
    # A worker's public URL is where its links point: one worker's at each API.
    worker_configs = [
        dataclasses.replace(config, data_dir=tmp_path / f"data-worker-{n}")
        for n, config in enumerate(api_configs, start=1)
    ]
    apis = [ApiProcess(c, log_dir / f"api-{n}") for n, c in enumerate(api_configs, start=1)]
    workers = [
        WorkerProcess(c, log_dir / f"worker-{n}") for n, c in enumerate(worker_configs, start=1)
    ]
    try:
        client = await temporal.start()
        replicas = Replicas(temporal, apis, workers, client)
        # All four at once on the empty database: they race to migrate it.
        await asyncio.gather(*(a.start() for a in apis), *(w.start() for w in workers))
        api_key = await create_api_key(api_configs[0])
        yield _Stack(replicas, api_configs, api_key)
    finally:
        for process in [*(a.process for a in apis), *(w.process for w in workers)]:
            process.close()
        temporal.process.close()
        print(f"\n===== process logs (folder {log_dir}) =====")
        for process in [
            temporal.process,
            *(a.process for a in apis),
            *(w.process for w in workers),
        ]:
            print(process.logs())


def _failure(what: str, replicas: Replicas) -> str:
    states = ", ".join(
        f"{p.log_dir.name} pid {p.pid}: {'running' if p.running else f'exited {p.returncode}'}"
        for p in replicas.processes
    )
    return f"{what}\n(processes: {states}; their logs follow in the captured output)"


async def test_two_workers_and_two_apis_survive_kills_with_every_email_once(
    postgres: PostgresServer, smtp: TimedSmtpServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    bodies = [_report_body(n, "rep") for n in range(CHECKOUTS)]
    run = Run()
    subscribers = [Subscriber(failures=0), Subscriber(failures=0)]
    hook_ports = [free_port(), free_port()]
    async with _replicas(tmp_path, postgres, smtp) as stack:
        replicas, configs = stack.replicas, stack.configs
        async with (
            serving(subscribers[0].app(), "127.0.0.1", hook_ports[0]),
            serving(subscribers[1].app(), "127.0.0.1", hook_ports[1]),
            httpx.AsyncClient(
                headers={"Authorization": f"Bearer {stack.api_key}"},
                timeout=30.0,
                limits=httpx.Limits(max_connections=2 * CONCURRENCY),
            ) as http,
        ):
            # One subscriber through each API: the secret one API sealed, the workers open.
            for n, (subscriber, port) in enumerate(zip(subscribers, hook_ports, strict=True)):
                answer = await http.post(
                    f"{configs[n].api_url}{SUBSCRIPTIONS}",
                    json={"url": f"http://127.0.0.1:{port}/hook", "events": ["*"]},
                )
                assert answer.status_code == 201, answer.text
                subscriber.secret = answer.json()["subscription"]["secret"]

            await _check_a_session_works_on_both_apis(configs, stack.api_key)
            reporting = time.monotonic()
            await _report_all(http, configs, bodies, replicas, run, smtp)
            run.reporting_seconds = time.monotonic() - reporting

            stored = await _stored_ids(configs[0].database_url)
            assert sorted(stored) == sorted(run.acknowledged.values()), _failure(
                f"the store holds {len(stored)} checkouts for {CHECKOUTS} acknowledged reports",
                replicas,
            )
            # An upper bound for a loaded machine; on an idle one the flows close within
            # seconds of the last report's last step.
            await _wait_until_closed(
                replicas.client,
                configs[0].task_queue,
                len(stored),
                timeout=STEP_DELAYS[-1] + LISTEN_WINDOW + 240,
            )
            event_ids = await _event_ids(configs[0].database_url)
            await _wait_for_deliveries(subscribers, event_ids, timeout=120)
            await _check_links_work_on_both_apis(configs, smtp)

        elapsed = time.monotonic() - started
        problems: list[str] = []
        problems += await _flow_problems(replicas.client, configs[0].task_queue, stored)
        emails = await _email_problems(smtp, bodies, run, configs[0].database_url)
        problems += emails.problems
        problems += _delivery_problems(subscribers, event_ids)
        applied = _migrations_applied(replicas)
        if sorted(applied) != _migration_chain():
            problems.append(
                f"migrations applied across the processes: {sorted(applied)}; expected each of "
                f"{_migration_chain()} once"
            )
        for process in replicas.processes:
            if not process.running:
                problems.append(f"{process.log_dir.name} is not running at the end")

        print(
            f"\nreplicas: {CHECKOUTS} checkouts through 2 APIs "
            f"({run.by_api[0]} + {run.by_api[1]}, {run.retries} retried calls), "
            f"{len(run.recovered_at)} recovered; 2 workers; "
            f"{emails.expected} emails expected, {emails.received} received, "
            f"{emails.duplicates} duplicate, {emails.lost} lost, "
            f"{emails.unconfirmed} unconfirmed (worker died awaiting the relay's answer); "
            f"{len(event_ids)} events x 2 subscribers, "
            f"{sum(sum(s.deliveries.values()) for s in subscribers)} deliveries; "
            f"migrations applied {len(applied)} (chain {len(_migration_chain())}); "
            f"kills: {'; '.join(run.kills)}; reports took {run.reporting_seconds:.0f} s, "
            f"elapsed {elapsed:.0f} s"
        )
        assert not problems, _failure(
            f"{len(problems)} problems:\n  - " + "\n  - ".join(problems), replicas
        )


async def _report_all(
    http: httpx.AsyncClient,
    configs: list[EngineConfig],
    bodies: list[dict[str, Any]],
    replicas: Replicas,
    run: Run,
    smtp: TimedSmtpServer,
) -> None:
    """Report every checkout (n through API n % 2, the other one on a retry), recover every
    10th at once, and kill one worker and one API on the way."""
    limit = asyncio.Semaphore(CONCURRENCY)
    kill_worker, kill_api = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    async def call(n: int, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        deadline = loop.time() + 90
        attempt = 0
        last = "nothing yet"
        while loop.time() < deadline:
            api = (n + attempt) % 2
            attempt += 1
            try:
                answer = await http.request(method, f"{configs[api].api_url}{path}", json=body)
            except httpx.TransportError as err:
                last = repr(err)
            else:
                # 5xx (a process on its way down) and 429 (a rate limit) are worth a retry.
                if answer.status_code < 500 and answer.status_code != 429:
                    assert answer.is_success, _failure(
                        f"{method} {path}: {answer.status_code} {answer.text[:300]}", replicas
                    )
                    run.by_api[api] += 1
                    return answer
                last = f"{answer.status_code} {answer.text[:200]}"
            run.retries += 1
            await asyncio.sleep(0.2)
        raise AssertionError(_failure(f"{method} {path}: no 2xx in 90 s; last: {last}", replicas))

    async def report(n: int) -> None:
        async with limit:
            answer = await call(n, "POST", REPORT, bodies[n])
            checkout_id = answer.json()["abandonedCheckout"]["id"]
            run.acknowledged[n] = checkout_id
            if n % RECOVER_EVERY == 3:
                await call(n + 1, "POST", f"{REPORT}/{checkout_id}/recover", {"orderId": f"o-{n}"})
                run.recovered_at[checkout_id] = datetime.now(UTC)
        if len(run.acknowledged) >= KILL_API_AFTER:
            kill_api.set()

    async def watch_mail() -> None:
        while True:
            if len(smtp.handler.arrivals) >= KILL_WORKER_AFTER_EMAILS:
                kill_worker.set()
                return
            await asyncio.sleep(0.05)

    async def kill(event: asyncio.Event, part: WorkerProcess | ApiProcess, name: str) -> None:
        await event.wait()
        pid = part.process.pid
        code = await part.kill(signal.SIGKILL)
        assert code == -signal.SIGKILL, f"{name} exited with {code}"
        killed_at = len(run.acknowledged)
        mails_then = len(smtp.handler.arrivals)
        await asyncio.sleep(1.0)
        await part.start()
        run.kills.append(
            f"{name} SIGKILLed after {killed_at} reports and {mails_then} emails "
            f"(pid {pid} -> {part.process.pid})"
        )

    killers = [
        asyncio.create_task(watch_mail()),
        asyncio.create_task(kill(kill_worker, replicas.workers[0], "worker-1")),
        asyncio.create_task(kill(kill_api, replicas.apis[1], "api-2")),
    ]
    await asyncio.gather(*(report(n) for n in range(len(bodies))))
    await asyncio.wait_for(asyncio.gather(*killers), timeout=120)


async def _check_a_session_works_on_both_apis(configs: list[EngineConfig], api_key: str) -> None:
    """A dashboard login on one API is a session on the other: the session secret is shared."""
    async with httpx.AsyncClient(timeout=30.0) as browser:
        login = await browser.post(
            f"{configs[0].api_url}/dashboard/login",
            content=f"api_key={api_key}&next=/dashboard",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert login.status_code == 303, login.text
        cookie = login.cookies.get("checkout_recovery_dashboard")
        assert cookie
    for config in configs:
        async with httpx.AsyncClient(
            timeout=30.0, cookies={"checkout_recovery_dashboard": cookie}
        ) as other_browser:
            page = await other_browser.get(f"{config.api_url}/dashboard")
        assert page.status_code == 200, (config.api_url, page.status_code, page.text[:300])


async def _check_links_work_on_both_apis(
    configs: list[EngineConfig], smtp: TimedSmtpServer
) -> None:
    """A recovery link a worker signed opens on either API: the link secret is shared."""
    message = smtp.handler.arrivals[0].message
    link = re.search(
        r"(http://127\.0\.0\.1:\d+)(/\S+redirect-to-checkout\?token=[^\s\"<>]+)",
        body_text(message, "plain"),
    )
    assert link, "no recovery link in the first email"
    async with httpx.AsyncClient(timeout=30.0) as browser:
        for config in configs:
            answer = await browser.get(f"{config.api_url}{link.group(2)}")
            assert answer.is_redirect, (config.api_url, answer.status_code, answer.text[:300])


async def _stored_ids(database_url: str) -> list[str]:
    store = SqlStore.from_url(database_url)
    try:
        async with store.engine.connect() as conn:
            return sorted((await conn.execute(select(checkouts.c.id))).scalars())
    finally:
        await store.close()


async def _event_ids(database_url: str) -> set[str]:
    store = SqlStore.from_url(database_url)
    try:
        async with store.engine.connect() as conn:
            return set((await conn.execute(select(events.c.id))).scalars())
    finally:
        await store.close()


async def _wait_for_deliveries(
    subscribers: list[Subscriber], event_ids: set[str], timeout: float
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if all(event_ids <= set(s.deliveries) for s in subscribers):
            return
        await asyncio.sleep(0.5)


def _flows_query(task_queue: str) -> str:
    return f'WorkflowType = "{WORKFLOW_NAME}" AND TaskQueue = "{task_queue}"'


async def _wait_until_closed(client: Client, task_queue: str, flows: int, timeout: float) -> None:
    """Until Temporal lists `flows` recovery flows on the queue and none running: one count a
    second (describing every flow each time would load the server the workers need)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    query = _flows_query(task_queue)
    while loop.time() < deadline:
        total = (await client.count_workflows(query)).count
        running = (await client.count_workflows(f'{query} AND ExecutionStatus = "Running"')).count
        if total >= flows and running == 0:
            return
        await asyncio.sleep(1.0)


async def _flow_problems(client: Client, task_queue: str, stored: list[str]) -> list[str]:
    """Exactly one recovery flow (one run) per checkout, none for anything else, all closed."""
    runs: Counter[str] = Counter()
    open_flows: list[str] = []
    async for execution in client.list_workflows(_flows_query(task_queue)):
        runs[execution.id] += 1
        if execution.status is WorkflowExecutionStatus.RUNNING:
            open_flows.append(execution.id)
    expected = {workflow_id_for(c) for c in stored}
    problems = []
    if set(runs) != expected:
        problems.append(
            f"{len(runs)} workflows of type {WORKFLOW_NAME} for {len(expected)} checkouts "
            f"(missing {sorted(expected - set(runs))[:5]}, extra {sorted(set(runs) - expected)[:5]})"
        )
    doubled = {w: n for w, n in runs.items() if n != 1}
    if doubled:
        problems.append(f"checkouts with more than one flow: {list(doubled.items())[:5]}")
    if open_flows:
        problems.append(
            f"{len(open_flows)} flows still running long after their last step, e.g. "
            f"{sorted(open_flows)[:5]}"
        )
    return problems


@dataclass
class EmailFigures:
    expected: int = 0
    received: int = 0
    duplicates: int = 0
    lost: int = 0
    unconfirmed: int = 0
    problems: list[str] = field(default_factory=list)


async def _email_problems(
    smtp: TimedSmtpServer, bodies: list[dict[str, Any]], run: Run, database_url: str
) -> EmailFigures:
    """Per checkout and step, by the deterministic Message-ID: sent once, never twice.

    A recovered checkout expects none (it is recovered long before its first step is due). A
    step that a killed worker left unconfirmed (it claimed the send with the whole message at
    the relay, then died before the relay's answer) records EMAIL_NOT_SENT delivery_unconfirmed
    rather than risk a second email; it is counted, and it is lost if the buyer never got it."""
    figures = EmailFigures(received=len(smtp.handler.arrivals))
    received: Counter[tuple[str, str]] = Counter(
        (a.recipient, a.message_id) for a in smtp.handler.arrivals
    )
    figures.duplicates = sum(n - 1 for n in received.values() if n > 1)
    if figures.duplicates:
        doubled = [key for key, n in received.items() if n > 1]
        figures.problems.append(f"{figures.duplicates} duplicate emails, e.g. {doubled[:3]}")
    store = SqlStore.from_url(database_url)
    try:
        for n, body in enumerate(bodies):
            checkout_id = run.acknowledged[n]
            recipient = body["buyerInfo"]["email"].lower()
            recovered = checkout_id in run.recovered_at
            workflow_id = workflow_id_for(checkout_id)
            for step in EMAIL_STEPS:
                message_id = message_id_for(step_key(workflow_id, step), MAIL_DOMAIN)
                got = received.get((recipient, message_id), 0)
                if recovered:
                    if got:
                        figures.problems.append(
                            f"recovered {checkout_id} got step {step}'s email anyway"
                        )
                    continue
                figures.expected += 1
                record = await store.get(checkout_id)
                # Entries number steps from 1.
                if record is not None and any(
                    a.type is ActivityType.EMAIL_NOT_SENT
                    and a.step == step + 1
                    and a.reason == NotSentReason.DELIVERY_UNCONFIRMED
                    for a in record.activities
                ):
                    figures.unconfirmed += 1
                if got:
                    continue
                figures.lost += 1
                record = await store.get(checkout_id)
                entries = [(a.type, a.step, a.reason) for a in record.activities] if record else []
                figures.problems.append(f"{checkout_id} step {step}: no email, entries {entries}")
    finally:
        await store.close()
    return figures


def _delivery_problems(subscribers: list[Subscriber], event_ids: set[str]) -> list[str]:
    problems = []
    for n, subscriber in enumerate(subscribers, start=1):
        missing = event_ids - set(subscriber.deliveries)
        if missing:
            problems.append(f"subscriber {n} is missing {len(missing)} of {len(event_ids)} events")
        unknown = set(subscriber.deliveries) - event_ids
        if unknown:
            problems.append(f"subscriber {n} got {len(unknown)} events the store never had")
        if subscriber.bad_signatures:
            problems.append(f"subscriber {n} got {subscriber.bad_signatures} bad signatures")
    return problems


def _migration_chain() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return sorted(revision.revision for revision in script.walk_revisions())


def _migrations_applied(replicas: Replicas) -> list[str]:
    """Every migration any start of any process applied, from their logs."""
    applied = []
    for process in replicas.processes[1:]:
        for start in range(1, process.starts + 1):
            for line in process.output(start).splitlines():
                found = re.search(rf"{MIGRATION_APPLIED}: (\w+)", line)
                if found:
                    applied.append(found.group(1))
    return applied
