"""The notification step against a small real HTTP receiver on loopback."""

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notification import NotificationActivities
from activities.rendering import TemplateRenderer
from activities.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER
from domain.activity import ActivityType
from domain.policy import NotificationStep
from domain.steps import NotificationStepRequest
from store.schema import activities as activities_table
from store.sql import SqlStore
from tests.support import sample_checkout

SECRET = "test-signing-secret"
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answer = 200


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.answer)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def _request(url: str) -> NotificationStepRequest:
    return NotificationStepRequest(
        checkout_id="c-1",
        workflow_id="abandoned-checkout-c-1",
        step_index=1,
        key="abandoned-checkout-c-1/step-2",
        at=NOW,
        step=NotificationStep(action="notification", url=url, delay="2h"),
    )


async def test_notification_is_signed_and_recorded(store: SqlStore, receiver):
    state, url = receiver
    await store.save_reported(
        sample_checkout().model_copy(update={"id": "c-1", "created_date": NOW}), NOW
    )
    async with httpx.AsyncClient() as http:
        activities = NotificationActivities(store, http, TemplateRenderer(), "Test Shop", SECRET)
        entry = await ActivityEnvironment().run(activities.send_staff_notification, _request(url))

    assert entry.type == ActivityType.NOTIFICATION_SENT and entry.step == 2
    ((headers, body),) = state.requests
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER.lower()] == expected
    assert headers[IDEMPOTENCY_HEADER.lower()] == "abandoned-checkout-c-1/step-2"
    payload = json.loads(body)
    assert payload["abandonedCheckout"]["id"] == "c-1"
    assert payload["abandonedCheckout"]["totalPrice"]["amount"] == "89.90"
    assert "Ada Lovelace" in payload["text"] and "€89.90" in payload["text"]
    assert "ada@example.com" not in body.decode()
    record = await store.get("c-1")
    assert record is not None
    assert [a.type for a in record.activities][-1] == ActivityType.NOTIFICATION_SENT


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (429, True), (404, False)])
async def test_failed_delivery_says_whether_to_retry(store: SqlStore, receiver, status, retryable):
    state, url = receiver
    state.answer = status
    await store.save_reported(
        sample_checkout().model_copy(update={"id": "c-1", "created_date": NOW}), NOW
    )
    async with httpx.AsyncClient() as http:
        activities = NotificationActivities(store, http, TemplateRenderer(), "Test Shop", SECRET)
        with pytest.raises(ApplicationError) as raised:
            await ActivityEnvironment().run(activities.send_staff_notification, _request(url))
    assert raised.value.non_retryable is (not retryable)
    record = await store.get("c-1")
    assert record is not None
    assert [a.type for a in record.activities] == [ActivityType.SCHEDULED]


@pytest.mark.parametrize(
    ("halt", "reason"),
    [("recover", "recovered"), ("cancel", "cancelled"), ("erase", "erased")],
)
async def test_no_notification_once_the_store_says_the_flow_must_stop(
    store: SqlStore, receiver, halt, reason
):
    """The signal may still be on its way: the step reads the store right before posting."""
    state, url = receiver
    await store.save_reported(
        sample_checkout().model_copy(update={"id": "c-1", "created_date": NOW}), NOW
    )
    if halt == "recover":
        assert await store.mark_recovered("c-1", NOW, None)
    elif halt == "cancel":
        assert await store.stop("c-1", NOW)
    else:
        assert await store.erase("c-1", NOW)
    async with httpx.AsyncClient() as http:
        activities = NotificationActivities(store, http, TemplateRenderer(), "Test Shop", SECRET)
        entry = await ActivityEnvironment().run(activities.send_staff_notification, _request(url))

    assert state.requests == []
    assert (entry.type, entry.reason, entry.step) == (
        ActivityType.NOTIFICATION_NOT_SENT,
        reason,
        2,
    )
    async with store.engine.connect() as conn:
        recorded = (
            await conn.execute(
                select(activities_table.c.type, activities_table.c.reason).where(
                    activities_table.c.key == "abandoned-checkout-c-1/step-2"
                )
            )
        ).all()
    assert [tuple(r) for r in recorded] == [("NOTIFICATION_NOT_SENT", reason)]
