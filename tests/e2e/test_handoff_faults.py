"""The hand-off's promise under real faults: once a caller has a 2xx, the change reaches its flow.

Every part runs as its own OS process (tests/e2e/processes.py): the Temporal dev server, the API,
a worker. The tests kill one of them while callers are busy, and then check from outside, as an
operator would: the HTTP answers, the store (read with SqlStore on the same database), Temporal
(describing each checkout's workflow) and what the SMTP server on loopback received.
"""

import asyncio
import random
import signal
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.email_message import message_id_for
from domain.activity import ActivityType
from domain.flow import RecoveryResult, step_key, workflow_id_for
from domain.links import LinkSigner
from store.schema import checkouts
from store.sql import SqlStore
from tests.e2e.processes import Stack, TimedSmtpServer, running_stack, timed_smtp_server
from tests.support import body_text, sample_checkout_data

REPORT = "/ecom/v1/abandoned-checkout"
UNSUBSCRIBE = "/ecom/v1/abandoned-checkout/unsubscribe"
NOT_FOUND = "NOT_FOUND"
SIDE_EFFECTS = {ActivityType.EMAIL_SENT, ActivityType.NOTIFICATION_SENT, ActivityType.TASK_CREATED}


@pytest.fixture
def smtp() -> Any:
    """This module's SMTP server: the tests' recording server, noting arrival times too."""
    with timed_smtp_server() as server:
        yield server


def _report_body(n: int, tag: str) -> dict[str, Any]:
    """A report with a buyer of its own (email and visitor id): nothing links two checkouts."""
    return sample_checkout_data(
        checkoutId=f"co-{tag}-{n}-{uuid.uuid4().hex[:8]}",
        buyerInfo={"email": f"buyer-{tag}-{n}@example.com", "visitorId": f"visitor-{tag}-{n}"},
    )


async def _stored_checkouts(database_url: str) -> dict[str, str]:
    """Every checkout row in the store: our id -> the shop's checkoutId."""
    store = SqlStore.from_url(database_url)
    try:
        async with store.engine.connect() as conn:
            rows = (await conn.execute(select(checkouts.c.id, checkouts.c.checkout_id))).all()
    finally:
        await store.close()
    return {row.id: row.checkout_id for row in rows}


async def _flow_statuses(client: Client, checkout_ids: list[str]) -> dict[str, str]:
    """Each checkout's workflow status name, NOT_FOUND when Temporal has no such workflow."""
    limit = asyncio.Semaphore(32)

    async def describe(checkout_id: str) -> tuple[str, str]:
        async with limit:
            try:
                found = await client.get_workflow_handle(workflow_id_for(checkout_id)).describe()
            except RPCError as err:
                if err.status is RPCStatusCode.NOT_FOUND:
                    return checkout_id, NOT_FOUND
                raise
            assert found.status is not None
            return checkout_id, found.status.name

    return dict(await asyncio.gather(*(describe(c) for c in checkout_ids)))


def _failure(what: str, stack: Stack) -> str:
    """An assertion message that points at the processes' logs (printed below by the fixture)."""
    exits = ", ".join(
        f"{p.name} pid {p.pid}: {'running' if p.running else f'exited {p.returncode}'}"
        for p in stack.processes
    )
    return f"{what}\n(processes: {exits}; their logs follow in the captured output)"


# --- (a) the API dies while reports are in flight ---------------------------------------------

SLOW_POLICY = """
name = "slow"
listen_window = "1h"
[frequency_cap]
window = "0s"
[[steps]]
delay = "1h"
action = "email"
template = "reminder"
"""
REPORTS = 220
CONCURRENCY = 32


async def test_api_sigkill_during_reports_loses_no_flow(
    database_url: str, smtp: TimedSmtpServer, tmp_path: Path
) -> None:
    """220 reports, 32 at a time, by a client that retries until it has a 2xx; the API is
    SIGKILLed mid-way and restarted on its port. Every checkout stored must get its one flow."""
    kill_after = random.randint(30, 60)
    bodies = [_report_body(n, "a") for n in range(REPORTS)]
    async with running_stack(
        tmp_path, database_url=database_url, policy_toml=SLOW_POLICY, smtp=smtp
    ) as stack:
        acknowledged: dict[str, str] = {}  # the shop's checkoutId -> our id
        in_flight = 0
        kill_now = asyncio.Event()
        killed: dict[str, Any] = {}
        limit = asyncio.Semaphore(CONCURRENCY)
        loop = asyncio.get_running_loop()

        async with stack.http(
            timeout=30.0, limits=httpx.Limits(max_connections=CONCURRENCY)
        ) as http:

            async def report_until_acknowledged(body: dict[str, Any]) -> None:
                nonlocal in_flight
                deadline = loop.time() + 150
                last = "nothing yet"
                async with limit:
                    in_flight += 1
                    try:
                        while loop.time() < deadline:
                            try:
                                answer = await http.post(REPORT, json=body)
                            except httpx.TransportError as err:
                                last = repr(err)
                                await asyncio.sleep(0.2)
                                continue
                            if answer.status_code >= 500:
                                last = f"{answer.status_code} {answer.text[:300]}"
                                await asyncio.sleep(0.2)
                                continue
                            assert answer.status_code in (200, 201), _failure(
                                f"report {body['checkoutId']}: {answer.status_code} {answer.text}",
                                stack,
                            )
                            acknowledged[body["checkoutId"]] = answer.json()["abandonedCheckout"][
                                "id"
                            ]
                            if len(acknowledged) >= kill_after:
                                kill_now.set()
                            return
                    finally:
                        in_flight -= 1
                raise AssertionError(
                    _failure(
                        f"report {body['checkoutId']} got no 2xx in 150 s; last: {last}", stack
                    )
                )

            async def kill_and_restart_api() -> None:
                await kill_now.wait()
                killed["in_flight"] = in_flight
                killed["acknowledged"] = len(acknowledged)
                killed["pid"] = stack.api.process.pid
                killed["code"] = await stack.api.kill(signal.SIGKILL)
                await stack.api.start()

            killer = asyncio.create_task(kill_and_restart_api())
            await asyncio.gather(*(report_until_acknowledged(b) for b in bodies))
            await asyncio.wait_for(killer, timeout=90)

        assert killed["code"] == -signal.SIGKILL, killed
        assert killed["in_flight"] > 0, f"no report was in flight when the API died: {killed}"
        assert stack.api.process.pid != killed["pid"]

        stored = await _stored_checkouts(database_url)
        sent = sorted(b["checkoutId"] for b in bodies)
        assert sorted(stored.values()) == sent, _failure(
            f"the store holds {len(stored)} checkouts for {REPORTS} distinct reports "
            f"(missing: {sorted(set(sent) - set(stored.values()))[:5]}, "
            f"duplicates: {len(stored) - len(set(stored.values()))})",
            stack,
        )
        assert len(stored) == REPORTS
        assert sorted(acknowledged.values()) == sorted(stored), "answers name other ids"

        statuses = await _wait_until_flows(
            stack.client, sorted(stored), lambda s: s == "RUNNING", timeout=60.0, stall=25.0
        )
        orphans = sorted(c for c, s in statuses.items() if s == NOT_FOUND)
        not_running = sorted(c for c, s in statuses.items() if s not in ("RUNNING", NOT_FOUND))
        assert not orphans, _failure(
            f"{len(orphans)} of {REPORTS} stored checkouts have no workflow in Temporal "
            f"(API SIGKILLed after {killed['acknowledged']} acknowledged reports, "
            f"{killed['in_flight']} in flight); e.g. {orphans[:5]}",
            stack,
        )
        assert not not_running, _failure(
            f"flows not running: {[(c, statuses[c]) for c in not_running[:5]]}", stack
        )


async def _wait_until_flows(
    client: Client,
    checkout_ids: list[str],
    good: Callable[[str], bool],
    *,
    timeout: float,
    stall: float | None = None,
) -> dict[str, str]:
    """Poll the flows' statuses until every one is `good`; give up after `timeout` seconds, or
    once the set of flows not yet good has not changed for `stall` seconds. Returns the last
    statuses seen (the caller asserts on them)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_change, last_pending = loop.time(), None
    while True:
        statuses = await _flow_statuses(client, checkout_ids)
        pending = frozenset(c for c, s in statuses.items() if not good(s))
        if not pending:
            return statuses
        if pending != last_pending:
            last_change, last_pending = loop.time(), pending
        now = loop.time()
        if now > deadline or (stall is not None and now - last_change > stall):
            return statuses
        await asyncio.sleep(1.0)


# --- (b) Temporal is down while callers report, recover, update and unsubscribe ----------------

STEP_DELAYS = (25, 50, 60)
LISTEN_WINDOW = 5
OUTAGE_POLICY = f"""
name = "outage"
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
[[steps]]
delay = "{STEP_DELAYS[2]}s"
action = "task"
template = "follow_up"
assignee = "sales"
due_in = "1h"
"""
OUTAGE_SECONDS = 32
NEW_ITEM = "Wool scarf"
NEW_CART = {
    "totalPrice": {"amount": "45.00", "formattedAmount": "€45.00"},
    "lineItems": [
        {"name": NEW_ITEM, "quantity": 1, "price": {"amount": "45.00", "formattedAmount": "€45.00"}}
    ],
}


@dataclass
class Reported:
    body: dict[str, Any]
    id: str = ""
    email: str = ""

    def __post_init__(self) -> None:
        self.email = self.body["buyerInfo"]["email"]


@dataclass
class Answers:
    """Every call of the outage, and the problems found with them."""

    problems: list[str] = field(default_factory=list)
    recovered_at: dict[str, datetime] = field(default_factory=dict)
    """checkout id -> when its recovery was acknowledged (2xx)."""
    unsubscribed_at: dict[str, datetime] = field(default_factory=dict)
    updated_at: dict[str, datetime] = field(default_factory=dict)

    async def call(
        self, what: str, send: Callable[[], Awaitable[httpx.Response]], expected: set[int]
    ) -> httpx.Response | None:
        try:
            answer = await send()
        except httpx.HTTPError as err:
            self.problems.append(f"{what}: no answer ({err!r})")
            return None
        if answer.status_code not in expected:
            self.problems.append(f"{what}: {answer.status_code} {answer.text[:300]}")
            return None
        return answer


async def test_temporal_outage_loses_no_report_and_no_recovery(
    smtp: TimedSmtpServer, tmp_path: Path
) -> None:
    """Temporal is SIGKILLed for over 30 s. Reports, recoveries, cart updates and an unsubscribe
    made meanwhile all answer 2xx, and once Temporal is back every flow runs as if it had been
    told at once: recovered buyers get nothing more, the others get each email exactly once."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    first = [Reported(_report_body(n, "up")) for n in range(10)]
    during = [Reported(_report_body(n, "down")) for n in range(10)]
    recover_first, update_first, unsubscribe_first = first[:5], first[5:7], first[7]
    recover_during = during[:3]
    answers = Answers()

    async with running_stack(
        tmp_path, database_url=database_url, policy_toml=OUTAGE_POLICY, smtp=smtp
    ) as stack:
        signer = LinkSigner(
            stack.config.link_signing_secret, stack.config.api_url, timedelta(days=30)
        )
        async with stack.http(timeout=60.0) as http:
            # While everything is up: the first batch, each with its running flow.
            for checkout in first:
                answer = await http.post(REPORT, json=checkout.body)
                assert answer.status_code == 201, _failure(
                    f"report with all up: {answer.text}", stack
                )
                checkout.id = answer.json()["abandonedCheckout"]["id"]
            statuses = await _wait_until_flows(
                stack.client, [c.id for c in first], lambda s: s == "RUNNING", timeout=20.0
            )
            assert all(s == "RUNNING" for s in statuses.values()), _failure(
                f"flows of the first batch, reported with all up: {statuses}", stack
            )

            assert await stack.temporal.kill(signal.SIGKILL) == -signal.SIGKILL
            outage_started = asyncio.get_running_loop().time()

            async def report_during(checkout: Reported) -> None:
                answer = await answers.call(
                    f"report {checkout.body['checkoutId']} during the outage",
                    lambda: http.post(REPORT, json=checkout.body),
                    {201},
                )
                if answer is None:
                    return
                shown = answer.json()["abandonedCheckout"]
                checkout.id = shown["id"]
                if shown.get("flowState") != "PENDING":
                    answers.problems.append(
                        f"report {checkout.id} during the outage: flowState "
                        f"{shown.get('flowState')!r}, expected 'PENDING'"
                    )

            async def recover(checkout: Reported) -> None:
                if not checkout.id:
                    answers.problems.append(
                        f"recover {checkout.body['checkoutId']} not tried: its report had no 2xx"
                    )
                    return
                answer = await answers.call(
                    f"recover {checkout.id} during the outage",
                    lambda: http.post(f"{REPORT}/{checkout.id}/recover", json={"orderId": "o-1"}),
                    {200},
                )
                if answer is not None:
                    answers.recovered_at[checkout.id] = datetime.now(UTC)
                    status = answer.json()["abandonedCheckout"]["status"]
                    if status != "RECOVERED":
                        answers.problems.append(f"recover {checkout.id}: status {status}")

            async def update(checkout: Reported) -> None:
                answer = await answers.call(
                    f"update {checkout.id} during the outage",
                    lambda: http.post(REPORT, json={**checkout.body, **NEW_CART}),
                    {200},
                )
                if answer is not None:
                    answers.updated_at[checkout.id] = datetime.now(UTC)

            async def unsubscribe(checkout: Reported) -> None:
                token = signer.unsubscribe_token(checkout.id)
                answer = await answers.call(
                    f"unsubscribe {checkout.id} during the outage",
                    lambda: http.post(
                        UNSUBSCRIBE,
                        params={"token": token},
                        data={"List-Unsubscribe": "One-Click"},
                    ),
                    {200},
                )
                if answer is not None:
                    answers.unsubscribed_at[checkout.id] = datetime.now(UTC)

            # The reports' createdDate is about now: their flows close last.
            last_reported = asyncio.get_running_loop().time()
            await asyncio.gather(
                *(report_during(c) for c in during),
                *(recover(c) for c in recover_first),
                *(update(c) for c in update_first),
                unsubscribe(unsubscribe_first),
            )
            await asyncio.gather(*(recover(c) for c in recover_during))
            left = OUTAGE_SECONDS - (asyncio.get_running_loop().time() - outage_started)
            await asyncio.sleep(max(0.0, left))
            assert not stack.temporal.process.running
            client = await stack.temporal.start()
            stack.client = client
            outage = asyncio.get_running_loop().time() - outage_started
            # The last step of the last report, its listen window, and time for the hand-off
            # and the worker to catch up after the outage.
            close_by = last_reported + STEP_DELAYS[-1] + LISTEN_WINDOW + 25
            wait = max(close_by - asyncio.get_running_loop().time(), 30.0)

            stored = await _stored_checkouts(database_url)
            statuses = await _wait_until_flows(
                client,
                sorted(stored),
                lambda s: s not in ("RUNNING", NOT_FOUND),
                timeout=wait,
            )

        problems = answers.problems
        if not stack.worker.process.running:
            problems.append(f"the worker died: exit code {stack.worker.process.returncode}")
        if not stack.api.process.running:
            problems.append(f"the API died: exit code {stack.api.process.returncode}")

        # Every report made: stored once, with its flow, and that flow has finished.
        reported = {c.body["checkoutId"] for c in first + during}
        if sorted(stored.values()) != sorted(reported):
            problems.append(
                f"the store holds {sorted(stored.values())} for the reports {sorted(reported)}"
            )
        orphans = sorted(c for c, s in statuses.items() if s == NOT_FOUND)
        if orphans:
            problems.append(f"{len(orphans)} stored checkouts have no workflow: {orphans}")
        still_running = sorted(c for c, s in statuses.items() if s == "RUNNING")
        if still_running:
            problems.append(f"flows still running long after their last step: {still_running}")

        store = SqlStore.from_url(database_url)
        try:
            tasks = await store.list_tasks()
            records = {c: await store.get(c) for c in stored}
        finally:
            await store.close()

        # Recovered: nothing after the acknowledgement, and the flow completed as recovered.
        for checkout_id, acked in answers.recovered_at.items():
            record = records.get(checkout_id)
            if record is None or record.status != "RECOVERED":
                problems.append(f"{checkout_id} is not RECOVERED in the store")
            email = _email_of(first + during, checkout_id)
            late_mail = [a for a in smtp.handler.arrivals_for(email) if a.received_at > acked]
            if late_mail:
                problems.append(
                    f"recovered {checkout_id} (acknowledged {acked:%H:%M:%S.%f}) still got "
                    f"{[(a.message['Subject'], f'{a.received_at:%H:%M:%S.%f}') for a in late_mail]}"
                )
            late_entries = [
                a
                for a in (record.activities if record else [])
                if a.type in SIDE_EFFECTS and a.created_date > acked
            ]
            if late_entries:
                problems.append(
                    f"recovered {checkout_id} got entries after recovery: {late_entries}"
                )
            late_tasks = [
                t for t in tasks if t.checkout_id == checkout_id and t.created_date > acked
            ]
            if late_tasks:
                problems.append(f"recovered {checkout_id} got staff tasks: {late_tasks}")
            await _expect_recovered_flow(client, checkout_id, statuses.get(checkout_id), problems)

        # Unsubscribed: no email after the unsubscribe was acknowledged.
        for checkout_id, acked in answers.unsubscribed_at.items():
            email = _email_of(first, checkout_id)
            late_mail = [a for a in smtp.handler.arrivals_for(email) if a.received_at > acked]
            if late_mail:
                problems.append(
                    f"unsubscribed {email} still got {[a.message['Subject'] for a in late_mail]}"
                )

        # Everyone else: each email step's message exactly once, and the staff task once.
        # (Judged by the role each checkout was given, not by the answers: one whose recovery
        # or unsubscribe failed above is already a problem, and expects nothing here.)
        touched = {id(c) for c in [*recover_first, *recover_during, unsubscribe_first]}
        untouched = [c for c in first + during if c.id and id(c) not in touched]
        if len(untouched) != len(first) + len(during) - len(touched):
            problems.append(f"only {len(untouched)} untouched checkouts have an id to check")
        for checkout in untouched:
            got = smtp.handler.arrivals_for(checkout.email)
            workflow_id = workflow_id_for(checkout.id)
            expected_ids = sorted(
                message_id_for(step_key(workflow_id, step), "shop.test") for step in (0, 1)
            )
            if sorted(a.message_id for a in got) != expected_ids:
                problems.append(
                    f"{checkout.id} ({checkout.email}) got {len(got)} emails "
                    f"{[a.message['Subject'] for a in got]}, expected its 2 steps once each"
                )
            own_tasks = [t for t in tasks if t.checkout_id == checkout.id]
            if len(own_tasks) != 1:
                problems.append(f"{checkout.id} has {len(own_tasks)} staff tasks, expected 1")
            if checkout.id in answers.updated_at:
                stale = [a for a in got if NEW_ITEM not in body_text(a.message, "plain")]
                if stale:
                    problems.append(
                        f"updated {checkout.id}: {len(stale)} emails still show the old cart"
                    )

        assert not problems, _failure(
            f"Temporal down for {outage:.0f} s; {len(problems)} problems:\n  - "
            + "\n  - ".join(problems),
            stack,
        )


def _email_of(checkouts_: list[Reported], checkout_id: str) -> str:
    return next(c.email for c in checkouts_ if c.id == checkout_id)


async def _expect_recovered_flow(
    client: Client, checkout_id: str, status: str | None, problems: list[str]
) -> None:
    if status != WorkflowExecutionStatus.COMPLETED.name:
        problems.append(f"recovered {checkout_id}: its flow is {status}, expected COMPLETED")
        return
    handle = client.get_workflow_handle(workflow_id_for(checkout_id), result_type=RecoveryResult)
    result = await handle.result()
    if result.closed_because != "recovered":
        problems.append(f"recovered {checkout_id}: its flow closed because {result.closed_because}")
