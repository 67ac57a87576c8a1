"""Access control on every route: no key, a wrong key, a revoked key, a read-only key."""

import re

from domain.access import Scope
from store.api_keys import ApiKeyStore
from tests.api.stack import Stack

PUBLIC = {
    ("GET", "/healthz"),
    # Probes carry no key: the body names which dependency failed, never data.
    ("GET", "/readyz"),
    ("GET", "/ecom/v1/abandoned-checkout/{checkout_id}/redirect-to-checkout"),
    ("GET", "/ecom/v1/abandoned-checkout/unsubscribe"),
    ("POST", "/ecom/v1/abandoned-checkout/unsubscribe"),
    # A relay's bounces and complaints, and the SMS provider's inbound texts: each is verified by
    # its provider's signature instead of a key (tests/feedback, tests/feedback_effects, tests/sms).
    ("POST", "/feedback/v1/{provider}"),
    ("POST", "/sms/v1/inbound"),
    # The OpenAPI document and its viewers describe the API; they hold no data.
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
READ = {
    ("POST", "/ecom/v1/abandoned-checkout/query"),
    ("GET", "/ecom/v1/abandoned-checkout/recovered-revenue"),
    ("GET", "/ecom/v1/abandoned-checkout/coupons/{code}"),
    ("GET", "/ecom/v1/abandoned-checkout/{checkout_id}"),
    ("GET", "/ecom/v1/abandoned-checkout/{checkout_id}/activities"),
    ("POST", "/codec/encode"),
    ("POST", "/codec/decode"),
}
MANAGE = {
    ("POST", "/ecom/v1/abandoned-checkout/coupons/{code}/redeem"),
    ("POST", "/ecom/v1/abandoned-checkout"),
    ("POST", "/ecom/v1/abandoned-checkout/recover"),
    ("POST", "/ecom/v1/abandoned-checkout/recover-buyer"),
    ("POST", "/ecom/v1/abandoned-checkout/{checkout_id}/recover"),
    ("DELETE", "/ecom/v1/abandoned-checkout/{checkout_id}"),
    ("POST", "/ecom/v1/abandoned-checkout-subscriptions"),
    ("GET", "/ecom/v1/abandoned-checkout-subscriptions"),
    ("DELETE", "/ecom/v1/abandoned-checkout-subscriptions/{subscription_id}"),
}

# The shops registry: platform keys only (tests/api/test_shop_routes.py checks who gets 403).
PLATFORM = {
    ("GET", "/ecom/v1/shops"),
    ("POST", "/ecom/v1/shops"),
    ("GET", "/ecom/v1/shops/{shop_id}"),
    ("PATCH", "/ecom/v1/shops/{shop_id}"),
}


async def _routes(stack: Stack) -> set[tuple[str, str]]:
    document = (await stack.http.get("/openapi.json")).json()
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "some-id", path)


async def _call(stack: Stack, method: str, path: str, headers: dict[str, str]) -> int:
    body = b"{}" if method == "POST" else None
    response = await stack.http.request(
        method, _url(path), content=body, headers={**headers, "Content-Type": "application/json"}
    )
    return response.status_code


async def test_every_route_is_classified(stack: Stack):
    # A new route must be added to one of the sets above, so that this file checks it.
    documented = await _routes(stack) | {("GET", "/docs"), ("GET", "/redoc")}
    assert documented - {("GET", "/docs/oauth2-redirect")} <= PUBLIC | READ | MANAGE | PLATFORM
    assert documented >= READ | MANAGE | PLATFORM


async def test_no_key_and_wrong_keys_get_401_on_every_protected_route(stack: Stack):
    keys = ApiKeyStore(stack.store.engine)
    revoked, revoked_token = await keys.create("old", frozenset({Scope.MANAGE}))
    await keys.revoke(revoked.id)
    wrong = stack.manage_key[:-4] + "AAAA"
    for method, path in sorted(READ | MANAGE | PLATFORM):
        for headers in (
            {},
            {"Authorization": "Bearer nonsense"},
            {"Authorization": f"Bearer {wrong}"},
            {"Authorization": f"Bearer {revoked_token}"},
            {"Authorization": f"Basic {stack.manage_key}"},
        ):
            status = await _call(stack, method, path, headers)
            assert status == 401, (method, path, headers)


async def test_a_read_only_key_reads_and_gets_403_on_manage_routes(stack: Stack):
    for method, path in sorted(MANAGE):
        assert await _call(stack, method, path, stack.as_reader()) == 403, (method, path)
    for method, path in sorted(READ):
        assert await _call(stack, method, path, stack.as_reader()) not in (401, 403), (method, path)


async def test_a_manage_key_may_read_too(stack: Stack):
    for method, path in sorted(READ | MANAGE):
        assert await _call(stack, method, path, stack.as_manager()) not in (401, 403), (
            method,
            path,
        )


async def test_public_routes_need_no_key(stack: Stack):
    assert (await stack.http.get("/healthz")).status_code == 200
    assert (await stack.http.get("/openapi.json")).status_code == 200
    refused = await stack.http.get("/ecom/v1/abandoned-checkout/x/redirect-to-checkout?token=1.2.3")
    assert refused.status_code == 403  # a forged link, not a missing key
    # No provider is configured in this stack: the route answers that, not 401.
    feedback = await stack.http.post("/feedback/v1/generic", content=b"{}")
    assert feedback.status_code == 404 and feedback.json()["code"] == "feedback_not_configured"


async def test_error_bodies_are_json_with_a_code(stack: Stack):
    response = await stack.http.get("/ecom/v1/abandoned-checkout/x")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthorized"
    forbidden = await stack.http.post(
        "/ecom/v1/abandoned-checkout/recover", json={}, headers=stack.as_reader()
    )
    assert (
        forbidden.json()
        == {
            "code": "forbidden",
            "message": forbidden.json()["message"],
        }
        and "abandoned-checkouts:manage" in forbidden.json()["message"]
    )
