"""Two shops behind one API: each shop's key sees and changes only its own shop's checkouts,
subscriptions and events; another shop's ids are not found (404, not 403); a platform key acts
for the shop it names (and that is logged), a shop the deployment does not serve is not found;
a shop key naming another shop is refused."""

import json
import logging
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from api.auth import SHOP_HEADER
from domain.access import Scope
from store.api_keys import ApiKeyStore
from store.shops import ShopStore
from store.sql import SqlStore
from tests.api.stack import BASE, Stack, checkout_body
from tests.ports import free_port
from tests.support import eventually
from workers.api_server import serving

SUBSCRIPTIONS = "/ecom/v1/abandoned-checkout-subscriptions"
A, B = "shop-a", "shop-b"
MANAGE = frozenset({Scope.MANAGE})


async def _key(store: SqlStore, shop_id: str | None) -> dict[str, str]:
    _, token = await ApiKeyStore(store.engine).create(f"{shop_id} key", MANAGE, shop_id=shop_id)
    return {"Authorization": f"Bearer {token}"}


def _body() -> dict[str, Any]:
    # The same checkoutId and the same buyer in both shops.
    return checkout_body(
        checkoutId=f"co-{uuid.uuid4()}",
        buyerInfo={"email": "same.buyer@example.com", "visitorId": "v-1"},
    )


async def _report(http: httpx.AsyncClient, body: dict[str, Any], key: dict[str, str]) -> str:
    response = await http.post(BASE, json=body, headers=key)
    assert response.status_code == 201, response.text
    return str(response.json()["abandonedCheckout"]["id"])


async def _query_ids(
    http: httpx.AsyncClient, key: dict[str, str], body: dict[str, Any]
) -> list[str]:
    query = {"query": {"filter": {"checkoutId": body["checkoutId"]}}}
    response = await http.post(f"{BASE}/query", json=query, headers=key)
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["abandonedCheckouts"]]


async def test_each_shop_key_reads_and_changes_only_its_shop(stack: Stack, store: SqlStore):
    http = stack.http
    key_a, key_b = await _key(store, A), await _key(store, B)
    body = _body()
    in_a, in_b = await _report(http, body, key_a), await _report(http, body, key_b)
    assert in_a != in_b

    for key, own, other in ((key_a, in_a, in_b), (key_b, in_b, in_a)):
        assert (await http.get(f"{BASE}/{own}", headers=key)).status_code == 200
        for path in (f"{BASE}/{other}", f"{BASE}/{other}/activities"):
            refused = await http.get(path, headers=key)
            assert refused.status_code == 404, refused.text  # not 403: existence does not leak
        assert await _query_ids(http, key, body) == [own]
    # Writes on another shop's id find nothing either, and change nothing.
    assert (await http.post(f"{BASE}/{in_b}/recover", headers=key_a)).status_code == 404
    assert (await http.delete(f"{BASE}/{in_b}", headers=key_a)).status_code == 404
    still = (await http.get(f"{BASE}/{in_b}", headers=key_b)).json()["abandonedCheckout"]
    assert still["status"] == "ABANDONED"

    # By the shop's checkoutId: shop A's checkout only.
    by_reference = await http.post(
        f"{BASE}/recover", json={"checkoutId": body["checkoutId"]}, headers=key_a
    )
    assert by_reference.json()["abandonedCheckout"]["id"] == in_a
    b_now = (await http.get(f"{BASE}/{in_b}", headers=key_b)).json()["abandonedCheckout"]
    assert b_now["status"] == "ABANDONED" and "stopReason" not in b_now

    # The same buyer bought in shop B: shop B's checkout, and nothing of shop A's.
    bought = await http.post(
        f"{BASE}/recover-buyer",
        json={"buyerInfo": {"email": "same.buyer@example.com"}, "orderId": "o-b"},
        headers=key_b,
    )
    assert bought.status_code == 200, bought.text
    assert bought.json()["abandonedCheckout"]["id"] == in_b
    assert bought.json()["stoppedCheckoutIds"] == []
    a_now = (await http.get(f"{BASE}/{in_a}", headers=key_a)).json()["abandonedCheckout"]
    assert a_now.get("orderId") is None


class _Receiver:
    def __init__(self) -> None:
        self.entity_ids: list[str] = []

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.entity_ids.append(json.loads(await request.body())["entityId"])
            return Response(status_code=204)

        return app


async def test_a_shops_subscriptions_and_events_are_its_own(stack: Stack, store: SqlStore):
    http = stack.http
    key_a, key_b = await _key(store, A), await _key(store, B)
    receiver, port = _Receiver(), free_port()
    async with serving(receiver.app(), "127.0.0.1", port):
        made = await http.post(
            SUBSCRIPTIONS,
            json={"url": f"http://127.0.0.1:{port}/hook", "events": ["created"]},
            headers=key_a,
        )
        assert made.status_code == 201, made.text
        subscription_id = made.json()["subscription"]["id"]
        assert (await http.get(SUBSCRIPTIONS, headers=key_b)).json() == {"subscriptions": []}
        listed = (await http.get(SUBSCRIPTIONS, headers=key_a)).json()["subscriptions"]
        assert [s["id"] for s in listed] == [subscription_id]
        removed = await http.delete(f"{SUBSCRIPTIONS}/{subscription_id}", headers=key_b)
        assert removed.status_code == 404

        body = _body()
        in_b = await _report(http, body, key_b)  # first: had it been delivered, it came first
        in_a = await _report(http, body, key_a)

        async def arrived() -> bool:
            return in_a in receiver.entity_ids

        await eventually(arrived, timeout=60, what="shop A's created event")
    # The store is this test's own: shop A's created event is all its receiver may get.
    assert set(receiver.entity_ids) == {in_a}, (in_b, receiver.entity_ids)


async def test_a_platform_key_acts_for_the_shop_it_names_and_that_is_logged(
    stack: Stack, store: SqlStore, caplog: pytest.LogCaptureFixture
):
    http = stack.http
    for shop_id in (A, B):  # a platform key acts only for a shop the deployment serves
        await ShopStore(store.engine).add(shop_id, shop_id)
    key_a, platform = await _key(store, A), await _key(store, None)
    body = _body()
    in_a = await _report(http, body, key_a)

    caplog.set_level(logging.INFO, logger="api.auth")
    as_a = {**platform, SHOP_HEADER: A}
    assert (await http.get(f"{BASE}/{in_a}", headers=as_a)).status_code == 200
    assert await _query_ids(http, as_a, body) == [in_a]
    platform_key_id = platform["Authorization"].split("_")[1]
    logged = [r.getMessage() for r in caplog.records if r.name == "api.auth"]
    assert f"Platform key {platform_key_id} acts for shop {A}" in logged
    # Without the header, a platform key acts for `default`; another shop's id is not found.
    assert (await http.get(f"{BASE}/{in_a}", headers=platform)).status_code == 404
    assert (
        await http.get(f"{BASE}/{in_a}", headers={**platform, SHOP_HEADER: B})
    ).status_code == 404
    bad = await http.get(f"{BASE}/{in_a}", headers={**platform, SHOP_HEADER: "Not A Shop"})
    assert bad.status_code == 400


async def test_a_shop_key_naming_another_shop_is_refused(stack: Stack, store: SqlStore):
    http = stack.http
    key_a = await _key(store, A)
    in_a = await _report(http, _body(), key_a)
    own = await http.get(f"{BASE}/{in_a}", headers={**key_a, SHOP_HEADER: A})
    assert own.status_code == 200
    for path in (f"{BASE}/{in_a}", SUBSCRIPTIONS):
        refused = await http.get(path, headers={**key_a, SHOP_HEADER: B})
        assert refused.status_code == 403, refused.text
        assert B not in refused.text  # the named shop is not echoed


async def test_a_platform_key_naming_a_shop_the_deployment_does_not_serve_gets_404(
    stack: Stack, store: SqlStore
):
    http = stack.http
    platform = await _key(store, None)
    body = _body()
    for path, send in (
        (f"{BASE}/{uuid.uuid4()}", lambda path, headers: http.get(path, headers=headers)),
        (BASE, lambda path, headers: http.post(path, json=body, headers=headers)),
        (SUBSCRIPTIONS, lambda path, headers: http.get(path, headers=headers)),
    ):
        unknown = await send(path, {**platform, SHOP_HEADER: "no-such-shop"})
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["code"] == "shop_not_found"
        assert SHOP_HEADER in unknown.json()["message"]
    # Nothing was reported into the shop that does not exist.
    assert (
        await store.find_id(shop_id="no-such-shop", checkout_id=body["checkoutId"], cart_id=None)
        is None
    )

    # `default` needs no registration; a shop registered a moment ago is served at once (an
    # unknown shop is never kept as unknown).
    as_default = {**platform, SHOP_HEADER: "default"}
    assert (await http.get(SUBSCRIPTIONS, headers=as_default)).status_code == 200
    await ShopStore(store.engine).add("no-such-shop", "Now it is")
    made = await http.post(BASE, json=body, headers={**platform, SHOP_HEADER: "no-such-shop"})
    assert made.status_code == 201, made.text
