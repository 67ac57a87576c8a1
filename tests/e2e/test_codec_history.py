"""With codec keys set, the workflow history Temporal stores holds no buyer data in readable form.

A real recovery flow (report, first email, cart update, recovery) runs on the time-skipping test
server with a worker and a service whose client encrypts. The history is then read as anyone with
access to Temporal would read it, through a client without the keys, and searched byte by byte for
the buyer's email and names; and read once more through the codec to check nothing was lost.
Finally Temporal's own codec client, the `temporal` CLI, reads a history through our codec endpoint
over HTTP, as the Web UI does.
"""

import asyncio
import base64
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
from temporalio.api.workflowservice.v1 import QueryWorkflowRequest
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from api.codec_routes import codec_router
from codec.payload_codec import ENCODING
from domain.activity import ActivityType
from domain.checkout import AbandonedCheckout
from domain.flow import RecoveryInput, RecoveryResult, workflow_id_for
from store.sql import SqlStore
from tests.ports import free_port
from tests.support import (
    SmtpServer,
    default_policy_any_hour,
    engine_settings,
    eventually,
    running_engine,
    sample_checkout,
)
from workers.api_server import serving
from workers.temporal_client import codec_from_settings, data_converter_for
from workflows.abandoned_checkout import AbandonedCheckoutWorkflow

KEYS = f"test-key:{base64.b64encode(b'k' * 32).decode()}"
# Long, distinctive strings: a three-letter name could turn up in random ciphertext by chance.
EMAIL = "augusta.byron@example.com"
FIRST_NAME = "Augusta"
LAST_NAME = "Lovelace-Byron"
BUYER_DATA = (EMAIL.encode(), FIRST_NAME.encode(), LAST_NAME.encode())
HISTORIES = Path(__file__).parent.parent / "workflows" / "histories"
TEMPORAL_CLI = str(Path(sys.executable).parent / "temporal")


def _payloads(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload anywhere inside a protobuf message, with the field path that leads to it."""
    if isinstance(message, Payload):
        yield path, message
        return
    for field, value in message.ListFields():
        here = f"{path}.{field.name}" if path else field.name
        if isinstance(value, Message):
            yield from _payloads(value, here)
        elif hasattr(value, "items"):  # a map field
            for key, item in value.items():
                if isinstance(item, Message):
                    yield from _payloads(item, f"{here}[{key}]")
        elif isinstance(value, (list, tuple)) or hasattr(value, "__len__"):
            for index, item in enumerate(value):
                if isinstance(item, Message):
                    yield from _payloads(item, f"{here}[{index}]")


def _history_payloads(history: WorkflowHistory) -> list[tuple[str, Payload]]:
    found: list[tuple[str, Payload]] = []
    for event in history.events:
        name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        found.extend(
            (f"#{event.event_id} {name} {path}", payload) for path, payload in _payloads(event)
        )
    return found


def _leaks(payloads: list[tuple[str, Payload]], needles: tuple[bytes, ...]) -> list[str]:
    return [
        f"{path}: {needle!r}"
        for path, payload in payloads
        for needle in needles
        if needle in payload.SerializeToString()
    ]


def _not_for_the_codec(path: str) -> bool:
    # Search attributes are indexed by the server, so Temporal never passes them through a codec;
    # the house rule keeps PII out of them instead (checked by the leak search below). A patch
    # marker's details hold only the patch's name, which the SDK writes as it is.
    return "search_attributes" in path or ("MARKER_RECORDED" in path and "[patch-data]" in path)


async def _result(env: WorkflowEnvironment, client: Client, workflow_id: str) -> RecoveryResult:
    handle = client.get_workflow_handle_for(AbandonedCheckoutWorkflow.run, workflow_id)
    await env.client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
    try:
        return await handle.result()
    finally:
        await env.client.test_service.lock_time_skipping(LockTimeSkippingRequest())


async def test_history_holds_no_buyer_data_readable_without_the_keys(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    settings = engine_settings(smtp.port, codec_keys=KEYS)
    plain_client = env.client  # what the Web UI or an operator without the keys sees
    codec_client = Client(
        env.client.service_client,
        namespace=env.client.namespace,
        data_converter=data_converter_for(settings),
    )
    checkout = sample_checkout(
        buyerInfo={"email": EMAIL, "visitorId": "visitor-1"},
        contactDetails={"firstName": FIRST_NAME, "lastName": LAST_NAME},
    )

    async with running_engine(codec_client, store, settings) as service:
        now = await env.get_current_time()
        checkout = checkout.model_copy(update={"created_date": now})
        outcome = await service.report(checkout, default_policy_any_hour(), now=now)
        workflow_id = workflow_id_for(outcome.checkout_id)

        await env.sleep(timedelta(hours=2))  # past the first email step (1 h)

        async def email_sent() -> bool:
            found = await store.get(outcome.checkout_id)
            return found is not None and ActivityType.EMAIL_SENT in [
                a.type for a in found.activities
            ]

        await eventually(email_sent, what="the first recovery email")
        updated = checkout.model_copy(
            update={"id": outcome.checkout_id, "line_items": checkout.line_items[:1]}
        )
        await service.update(updated)
        live = await codec_client.get_workflow_handle(workflow_id).query(
            "checkout", result_type=AbandonedCheckout
        )
        raw_query = await plain_client.workflow_service.query_workflow(
            QueryWorkflowRequest(
                namespace=plain_client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id),
                query=WorkflowQuery(query_type="checkout"),
            )
        )
        await service.recover(outcome.checkout_id, order_id="order-1")
        result = await _result(env, codec_client, workflow_id)

    assert result.closed_because == "recovered"
    assert [m["To"] for m in smtp.handler.messages] == [f"{FIRST_NAME} {LAST_NAME} <{EMAIL}>"]

    # Read as Temporal stores it: the whole history, every payload in it, and a live query.
    stored = await plain_client.get_workflow_handle(workflow_id).fetch_history()
    payloads = _history_payloads(stored)
    kinds = {path.split(" ")[1] for path, _ in payloads}
    assert {
        "WORKFLOW_EXECUTION_STARTED",
        "ACTIVITY_TASK_SCHEDULED",
        "ACTIVITY_TASK_COMPLETED",
        "WORKFLOW_EXECUTION_SIGNALED",
        "WORKFLOW_EXECUTION_COMPLETED",
    } <= kinds, kinds
    assert _leaks(payloads, BUYER_DATA) == []
    assert not any(needle in stored.to_json().encode() for needle in BUYER_DATA)
    unencrypted = [
        path
        for path, payload in payloads
        if payload.metadata.get("encoding") != ENCODING and not _not_for_the_codec(path)
    ]
    assert unencrypted == []
    query_payloads = list(_payloads(raw_query.query_result))
    assert query_payloads and _leaks(query_payloads, BUYER_DATA) == []
    assert all(p.metadata["encoding"] == ENCODING for _, p in query_payloads)
    assert live.buyer_info.email == EMAIL

    # The same history through the codec: the input is the checkout as reported.
    converter = codec_client.data_converter
    fetched = await codec_client.get_workflow_handle(workflow_id).fetch_history()
    started = fetched.events[0].workflow_execution_started_event_attributes
    [flow] = await converter.decode(list(started.input.payloads), [RecoveryInput])
    assert isinstance(flow, RecoveryInput)
    assert flow.checkout.id == outcome.checkout_id
    assert flow.checkout.buyer_info.email == EMAIL
    assert flow.checkout.contact_details.first_name == FIRST_NAME
    assert flow.checkout.contact_details.last_name == LAST_NAME
    assert flow.checkout.line_items == checkout.line_items
    assert flow.checkout.checkout_url == checkout.checkout_url
    signals = [
        e.workflow_execution_signaled_event_attributes
        for e in fetched.events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    snapshot = next(s for s in signals if s.signal_name == "checkout_updated")
    [decoded_update] = await converter.decode(list(snapshot.input.payloads), [AbandonedCheckout])
    assert isinstance(decoded_update, AbandonedCheckout)
    assert decoded_update.line_items == checkout.line_items[:1]
    assert decoded_update.buyer_info.email == EMAIL
    # ...and decrypting every payload brings the buyer back: the search above looked at real data.
    assert converter.payload_codec is not None
    decrypted = await converter.payload_codec.decode([p for _, p in payloads])
    assert _leaks([("decrypted", p) for p in decrypted], (EMAIL.encode(),))


def test_the_leak_search_finds_buyer_data_in_a_history_written_without_the_codec() -> None:
    """The control: the same search over a plain history (recorded before encryption) finds it."""
    path = HISTORIES / "recovered_after_first_email.json"
    history = WorkflowHistory.from_json("abandoned-checkout-control", path.read_text())

    payloads = _history_payloads(history)

    leaks = _leaks(payloads, (b"ada@example.com", b"Lovelace"))
    assert any("WORKFLOW_EXECUTION_STARTED" in leak for leak in leaks), leaks
    assert all(p.metadata.get("encoding") != ENCODING for _, p in payloads)


@contextlib.asynccontextmanager
async def _codec_endpoint(app: FastAPI) -> AsyncIterator[str]:
    """The app on a free loopback port, for as long as the block runs; yields its codec URL."""
    port = free_port()
    async with serving(app, "127.0.0.1", port):
        yield f"http://127.0.0.1:{port}/codec"


async def _temporal_cli(*args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        TEMPORAL_CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    document: dict[str, Any] = json.loads(out)
    return document


def _started_input(shown: dict[str, Any]) -> dict[str, Any]:
    started = shown["events"][0]["workflowExecutionStartedEventAttributes"]
    payload: dict[str, Any] = started["input"]["payloads"][0]
    return payload


async def test_the_temporal_cli_reads_the_history_through_our_codec_endpoint(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    """Temporal's own codec client (the CLI, as the Web UI would) against our endpoint."""
    env = time_skipping_env
    settings = engine_settings(smtp.port, codec_keys=KEYS)
    codec_client = Client(
        env.client.service_client,
        namespace=env.client.namespace,
        data_converter=data_converter_for(settings),
    )
    seen_namespaces: list[str | None] = []

    async def authorize(
        authorization: Annotated[str | None, Header()] = None,
        x_namespace: Annotated[str | None, Header()] = None,
    ) -> None:
        seen_namespaces.append(x_namespace)
        if authorization != "Bearer cli-key":
            raise HTTPException(401, "a valid API key is needed")

    app = FastAPI()
    app.include_router(codec_router(codec_from_settings(settings), authorize))
    async with running_engine(codec_client, store, settings) as service:
        now = await env.get_current_time()
        checkout = sample_checkout(buyerInfo={"email": EMAIL, "visitorId": "visitor-1"})
        outcome = await service.report(
            checkout.model_copy(update={"created_date": now}), default_policy_any_hour(), now=now
        )
    workflow_id = workflow_id_for(outcome.checkout_id)
    address = env.client.service_client.config.target_host
    show = ("workflow", "show", "--address", address, "-w", workflow_id, "--output", "json")

    async with _codec_endpoint(app) as endpoint:
        decoded = await _temporal_cli(
            *show, "--codec-endpoint", endpoint, "--codec-auth", "Bearer cli-key"
        )
    raw = await _temporal_cli(*show)

    payload = _started_input(decoded)
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
    flow = json.loads(base64.b64decode(payload["data"]))
    assert flow["checkout"]["buyerInfo"]["email"] == EMAIL
    assert seen_namespaces and set(seen_namespaces) == {"default"}
    encrypted = _started_input(raw)
    assert base64.b64decode(encrypted["metadata"]["encoding"]) == ENCODING
    assert EMAIL.encode() not in base64.b64decode(encrypted["data"])
