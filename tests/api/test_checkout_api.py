"""The checkout API over real HTTP, with a real Temporal dev server, worker and SMTP server."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from domain.activity import ActivityEntry, ActivityType
from domain.flow import workflow_id_for
from domain.links import LinkSigner
from store.schema import checkouts, events, link_clicks
from tests.api.stack import BASE, Stack, checkout_body
from tests.support import SmtpServer, body_text, eventually


async def _activities(stack: Stack, checkout_id: str) -> list[dict[str, object]]:
    response = await stack.http.get(f"{BASE}/{checkout_id}/activities", headers=stack.as_reader())
    assert response.status_code == 200, response.text
    entries = response.json()["activities"]
    assert isinstance(entries, list)
    return entries


async def test_report_starts_one_flow_and_a_repeat_returns_the_same_checkout(stack: Stack):
    body = checkout_body()
    first = await stack.report(body)
    assert first.status_code == 201, first.text
    created = first.json()["abandonedCheckout"]
    assert created["status"] == "ABANDONED"
    assert created["checkoutId"] == body["checkoutId"]
    assert [a["type"] for a in created["activities"]] == ["SCHEDULED"]

    changed = {**body, "totalPrice": {"amount": "120.00"}}
    again = await stack.report(changed)
    assert again.status_code == 200, again.text
    assert again.json()["abandonedCheckout"]["id"] == created["id"]
    assert again.json()["abandonedCheckout"]["totalPrice"] == {"amount": "120.00"}
    assert again.json()["abandonedCheckout"]["createdDate"] == created["createdDate"]
    listed = await _activities(stack, created["id"])
    assert [a["type"] for a in listed].count("SCHEDULED") == 1


async def test_sdk_spelling_is_accepted(stack: Stack):
    body = checkout_body()
    body["_id"] = ""
    body["_createdDate"] = "2026-11-20T08:00:00Z"
    response = await stack.report(body)
    assert response.status_code == 201, response.text
    assert response.json()["abandonedCheckout"]["createdDate"] == "2026-11-20T08:00:00Z"


async def test_a_wrapped_body_is_accepted(stack: Stack):
    response = await stack.http.post(
        BASE, json={"abandonedCheckout": checkout_body()}, headers=stack.as_manager()
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"buyerInfo": {"email": "not-an-address", "visitorId": "v"}}, ["buyerInfo.email"]),
        ({"currency": "EURO", "totalPrice": {"amount": "abc"}}, ["currency", "totalPrice.amount"]),
        ({"status": "RECOVERED"}, ["status"]),
        ({"id": "mine"}, ["id"]),
        (
            {"createdDate": "2026-01-01T00:00:00Z", "_createdDate": "2026-01-01T00:00:00Z"},
            ["_createdDate"],
        ),
        ({"surprise": 1}, ["surprise"]),
    ],
)
async def test_bad_reports_are_400_naming_each_field(stack: Stack, change, fields):
    response = await stack.report({**checkout_body(), **change})
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == "invalid_input"
    assert sorted(d["field"] for d in error["details"]) == sorted(fields)


async def test_malformed_and_oversized_bodies_are_refused_with_json_errors(stack: Stack):
    headers = {**stack.as_manager(), "Content-Type": "application/json"}
    broken = await stack.http.post(BASE, content=b'{"checkoutId": ', headers=headers)
    assert (broken.status_code, broken.json()["code"]) == (400, "invalid_json")
    huge = b'{"checkoutId": "' + b"x" * 2_000_000 + b'"}'
    refused = await stack.http.post(BASE, content=huge, headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (413, "body_too_large")
    not_object = await stack.http.post(BASE, json=[1, 2], headers=headers)
    assert not_object.status_code == 400


async def test_get_shows_the_newest_20_activities_and_the_full_list_has_all(stack: Stack):
    created = (await stack.report(checkout_body())).json()["abandonedCheckout"]
    # The flow's first email goes out a second after the report.
    await eventually(
        lambda: _has_entry(stack, created["id"], ActivityType.EMAIL_SENT), what="first email"
    )
    base = datetime.now(UTC)
    for index in range(25):
        entry = ActivityEntry(
            type=ActivityType.NOTIFICATION_SENT, created_date=base + timedelta(seconds=index)
        )
        await stack.store.record_activity(created["id"], f"extra-{index}", entry)
    shown = await stack.http.get(f"{BASE}/{created['id']}", headers=stack.as_reader())
    assert shown.status_code == 200
    activities = shown.json()["abandonedCheckout"]["activities"]
    assert len(activities) == 20
    assert activities[-1]["createdDate"] == (base + timedelta(seconds=24)).isoformat().replace(
        "+00:00", "Z"
    )
    full = await _activities(stack, created["id"])
    assert len(full) == 27  # SCHEDULED, EMAIL_SENT, 25 notifications
    missing = await stack.http.get(f"{BASE}/nope", headers=stack.as_reader())
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


async def _has_entry(stack: Stack, checkout_id: str, kind: ActivityType) -> bool:
    return any(a["type"] == kind for a in await _activities(stack, checkout_id))


async def test_recover_by_id_twice_keeps_the_first_recovery(
    stack: Stack, dev_server_env: WorkflowEnvironment
):
    created = (await stack.report(checkout_body())).json()["abandonedCheckout"]
    first = await stack.http.post(
        f"{BASE}/{created['id']}/recover",
        json={"orderId": "order-1", "checkoutRecoveredDate": "2026-11-22T10:00:00Z"},
        headers=stack.as_manager(),
    )
    second = await stack.http.post(
        f"{BASE}/{created['id']}/recover", json={"orderId": "order-2"}, headers=stack.as_manager()
    )
    assert first.status_code == second.status_code == 200
    for response in (first, second):
        checkout = response.json()["abandonedCheckout"]
        assert (checkout["status"], checkout["orderId"]) == ("RECOVERED", "order-1")
        assert checkout["checkoutRecoveredDate"] == "2026-11-22T10:00:00Z"
    # The flow heard it and stopped: no email step ran before or after.
    handle = dev_server_env.client.get_workflow_handle(workflow_id_for(created["id"]))
    result = await handle.result()
    assert result["closedBecause" if "closedBecause" in result else "closed_because"] == "recovered"
    assert not await _has_entry(stack, created["id"], ActivityType.EMAIL_SENT)


async def test_recover_by_checkout_id_and_by_cart_id(stack: Stack):
    by_checkout = checkout_body()
    by_cart = checkout_body(checkoutId=None, cartId="cart-77")
    by_cart.pop("checkoutId")
    ids = []
    for body in (by_checkout, by_cart):
        ids.append((await stack.report(body)).json()["abandonedCheckout"]["id"])
    for _ in range(2):
        response = await stack.http.post(
            f"{BASE}/recover",
            json={"checkoutId": by_checkout["checkoutId"], "orderId": "o-9"},
            headers=stack.as_manager(),
        )
        assert response.status_code == 200, response.text
        assert response.json()["abandonedCheckout"]["id"] == ids[0]
    response = await stack.http.post(
        f"{BASE}/recover", json={"cartId": "cart-77"}, headers=stack.as_manager()
    )
    assert response.json()["abandonedCheckout"]["status"] == "RECOVERED"
    unknown = await stack.http.post(
        f"{BASE}/recover", json={"checkoutId": "never-seen"}, headers=stack.as_manager()
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    neither = await stack.http.post(f"{BASE}/recover", json={}, headers=stack.as_manager())
    assert neither.status_code == 400


async def test_delete_stops_the_flow_and_erases_personal_data(
    stack: Stack, dev_server_env: WorkflowEnvironment
):
    body = checkout_body()
    created = (await stack.report(body)).json()["abandonedCheckout"]
    checkout_id = created["id"]
    deleted = await stack.http.delete(f"{BASE}/{checkout_id}", headers=stack.as_manager())
    assert (deleted.status_code, deleted.json()) == (200, {})
    again = await stack.http.delete(f"{BASE}/{checkout_id}", headers=stack.as_manager())
    assert again.status_code == 200
    gone = await stack.http.get(f"{BASE}/{checkout_id}", headers=stack.as_reader())
    assert gone.status_code == 404

    async with stack.store.engine.connect() as conn:
        row = (await conn.execute(select(checkouts).where(checkouts.c.id == checkout_id))).one()
        bodies = [
            r.entity
            for r in await conn.execute(select(events).where(events.c.entity_id == checkout_id))
        ]
        slugs = [
            r.slug
            for r in await conn.execute(
                select(events.c.slug)
                .where(events.c.entity_id == checkout_id)
                .order_by(events.c.sequence)
            )
        ]
    assert row.deleted_date is not None and row.buyer_email is None
    assert "ada@example.com" not in row.snapshot and "Lovelace" not in row.snapshot
    assert json.loads(row.snapshot)["totalPrice"] == {
        "amount": "89.90",
        "formattedAmount": "€89.90",
    }
    assert all("ada@example.com" not in b for b in bodies)
    assert slugs == ["created", "deleted"]
    # The workflow execution, whose history held the buyer's data, is gone from Temporal.
    handle = dev_server_env.client.get_workflow_handle(workflow_id_for(checkout_id))
    with pytest.raises(RPCError):
        await handle.describe()
    # Reported again, it is refused: no flow may mail an erased buyer.
    refused = await stack.report(body)
    assert (refused.status_code, refused.json()["code"]) == (410, "checkout_deleted")


async def test_recovery_link_redirects_with_a_good_token_only(stack: Stack, smtp: SmtpServer):
    created = (await stack.report(checkout_body())).json()["abandonedCheckout"]
    checkout_id = created["id"]
    message = await eventually(lambda: _first_message(smtp), what="the first email")
    links = re.findall(
        r"https?://\S+redirect-to-checkout\?token=[\w.-]+", body_text(message, "plain")
    )
    assert links, body_text(message, "plain")
    link = links[0].removeprefix(stack.settings.public_url)

    good = await stack.http.get(link)  # no API key: the token is the permission
    assert good.status_code == 302
    assert good.headers["location"] == "https://shop.example/checkout?id=42"

    step, expires, signature = link.rpartition("token=")[2].split(".")
    forged_signature = (
        f"{BASE}/{checkout_id}/redirect-to-checkout?token={step}.{int(expires) + 999}.{signature}"
    )
    other_checkout = f"{BASE}/someone-else/redirect-to-checkout?token={step}.{expires}.{signature}"
    for forged in (forged_signature, other_checkout, f"{BASE}/{checkout_id}/redirect-to-checkout"):
        refused = await stack.http.get(forged)
        assert (refused.status_code, refused.json()["code"]) == (403, "invalid_link"), forged

    old = LinkSigner(_secret(stack), stack.settings.public_url, timedelta(days=1))
    expired_url = old.url(checkout_id, 1, datetime.now(UTC) - timedelta(days=2))
    expired = await stack.http.get(expired_url)
    assert (expired.status_code, expired.json()["code"]) == (410, "link_expired")

    async with stack.store.engine.connect() as conn:
        clicks = (await conn.execute(select(link_clicks.c.checkout_id, link_clicks.c.step))).all()
    assert [tuple(c) for c in clicks] == [(checkout_id, 1)]


async def _first_message(smtp: SmtpServer):
    return smtp.handler.messages[0] if smtp.handler.messages else None


def _secret(stack: Stack) -> str:
    return (stack.settings.data_dir / "link-signing-secret").read_text().strip()
