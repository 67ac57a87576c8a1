"""Webhook events end to end: a real HTTP receiver that verifies Standard Webhooks signatures."""

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response

from tests.api.stack import BASE, Stack, checkout_body
from tests.ports import free_port
from tests.support import eventually
from workers.api_server import serving

SUBSCRIPTIONS = "/ecom/v1/abandoned-checkout-subscriptions"


@dataclass
class Receiver:
    """A subscriber that fails the first `failures` deliveries with 500."""

    secret: str = ""
    failures: int = 2
    attempts: int = 0
    bad_signatures: int = 0
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    """By webhook-id: the de-duplicated events."""

    def verify(self, request_headers: dict[str, str], body: bytes) -> bool:
        # Written from the Standard Webhooks specification, independently of the engine's code.
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        signed = f"{request_headers['webhook-id']}.{request_headers['webhook-timestamp']}.".encode()
        expected = base64.b64encode(hmac.new(key, signed + body, hashlib.sha256).digest()).decode()
        offered = [s.split(",", 1)[1] for s in request_headers["webhook-signature"].split()]
        return any(hmac.compare_digest(expected, s) for s in offered)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.attempts += 1
            body = await request.body()
            if not self.verify(dict(request.headers), body):
                self.bad_signatures += 1
                return Response(status_code=400)
            if self.attempts <= self.failures:
                return Response(status_code=500)
            self.events.setdefault(request.headers["webhook-id"], json.loads(body))
            return Response(status_code=204)

        return app


async def _subscribe(stack: Stack, url: str, events: list[str]) -> dict[str, Any]:
    response = await stack.http.post(
        SUBSCRIPTIONS, json={"url": url, "events": events}, headers=stack.as_manager()
    )
    assert response.status_code == 201, response.text
    subscription = response.json()["subscription"]
    assert subscription["secret"].startswith("whsec_")
    return dict(subscription)


async def test_subscribers_get_each_event_once_signed_in_sequence_despite_failures(stack: Stack):
    everything, recoveries = Receiver(failures=2), Receiver(failures=0)
    port_a, port_b = free_port(), free_port()
    async with (
        serving(everything.app(), "127.0.0.1", port_a),
        serving(recoveries.app(), "127.0.0.1", port_b),
    ):
        everything.secret = (await _subscribe(stack, f"http://127.0.0.1:{port_a}/hook", ["*"]))[
            "secret"
        ]
        recoveries.secret = (
            await _subscribe(stack, f"http://127.0.0.1:{port_b}/hook", ["recovered"])
        )["secret"]

        body = checkout_body()
        checkout_id = (await stack.report(body)).json()["abandonedCheckout"]["id"]
        await stack.report(body)  # unchanged: no event
        await stack.report({**body, "totalPrice": {"amount": "99.00"}})  # updated
        for _ in range(2):  # the second recovery changes nothing: no event
            await stack.http.post(f"{BASE}/{checkout_id}/recover", headers=stack.as_manager())
        # Deleting erases the bodies of events not yet delivered too; let these arrive first.
        await eventually(lambda: _count(everything, 3), timeout=60, what="three events")
        await stack.http.delete(f"{BASE}/{checkout_id}", headers=stack.as_manager())

        await eventually(lambda: _count(everything, 4), timeout=60, what="four events")
        await eventually(lambda: _count(recoveries, 1), timeout=60, what="the recovery")

    assert len(everything.events) == 4, everything.events
    received = sorted(everything.events.values(), key=lambda e: e["entityEventSequence"])
    assert [(e["slug"], e["entityEventSequence"]) for e in received] == [
        ("created", 1),
        ("updated", 2),
        ("recovered", 3),
        ("deleted", 4),
    ]
    assert {e["entityId"] for e in received} == {checkout_id}
    assert received[1]["entity"]["totalPrice"] == {"amount": "99.00"}
    assert received[2]["entity"]["status"] == "RECOVERED"
    assert received[3]["entity"] == {"id": checkout_id}
    assert all(e["entityFqdn"] and e["eventTime"] for e in received)
    # The first two deliveries were refused and retried: nothing lost, nothing doubled.
    assert everything.attempts >= 6 and everything.bad_signatures == 0
    assert [e["slug"] for e in recoveries.events.values()] == ["recovered"]


async def _count(receiver: Receiver, expected: int) -> bool:
    return len(receiver.events) >= expected


async def test_subscriptions_are_listed_without_secrets_and_removed(stack: Stack):
    made = await _subscribe(stack, "https://hooks.example/a", ["created", "deleted"])
    listed = (await stack.http.get(SUBSCRIPTIONS, headers=stack.as_manager())).json()
    assert listed == {
        "subscriptions": [
            {
                "id": made["id"],
                "url": "https://hooks.example/a",
                "events": ["created", "deleted"],
                "createdDate": made["createdDate"],
            }
        ]
    }
    removed = await stack.http.delete(f"{SUBSCRIPTIONS}/{made['id']}", headers=stack.as_manager())
    assert removed.status_code == 200
    again = await stack.http.delete(f"{SUBSCRIPTIONS}/{made['id']}", headers=stack.as_manager())
    assert again.status_code == 404
    bad = await stack.http.post(
        SUBSCRIPTIONS,
        json={"url": "ftp://x", "events": ["shipped"], "secret": "plain"},
        headers=stack.as_manager(),
    )
    assert bad.status_code == 400
    assert sorted(d["field"] for d in bad.json()["details"]) == ["events", "secret", "url"]
