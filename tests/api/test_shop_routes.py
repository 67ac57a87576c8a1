"""The shops registry over HTTP: platform keys only; a shop's own key gets 403 on every route."""

from pathlib import Path
from typing import Any

import pytest

from domain.access import Scope
from domain.shops import DEFAULT_SHOP
from store.api_keys import ApiKeyStore
from store.shops import ShopStore
from tests.api.stack import Stack
from tests.api.test_openapi_fuzz import _fuzz

SHOPS = "/ecom/v1/shops"
POLICY = """
name = "acme-own"
[[steps]]
delay = "3h"
action = "email"
template = "reminder"
"""


async def _key(stack: Stack, scope: Scope, shop_id: str | None) -> dict[str, str]:
    _, token = await ApiKeyStore(stack.store.engine).create(
        "shops", frozenset({scope}), shop_id=shop_id
    )
    return {"Authorization": f"Bearer {token}"}


async def _ok(stack: Stack, method: str, path: str, headers: dict[str, str], **body: Any) -> Any:
    answer = await stack.http.request(method, path, headers=headers, json=body or None)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


async def test_a_platform_key_adds_reads_lists_and_changes_shops(stack: Stack) -> None:
    platform = await _key(stack, Scope.MANAGE, None)
    made = await _ok(
        stack,
        "POST",
        SHOPS,
        platform,
        id="acme",
        name="Acme Ltd",
        settings={
            "policy": POLICY,
            "mailFrom": "Acme <hi@acme.example>",
            "timeZone": "Europe/Paris",
        },
    )
    assert made["shop"]["settings"] == {
        "policy": POLICY.strip(),
        "mailFrom": "Acme <hi@acme.example>",
        "timeZone": "Europe/Paris",
    }
    listed = await _ok(stack, "GET", SHOPS, platform)
    assert [shop["id"] for shop in listed["shops"]] == ["acme", DEFAULT_SHOP]
    assert listed["shops"][1]["settings"] == {}

    changed = await _ok(
        stack,
        "PATCH",
        f"{SHOPS}/acme",
        platform,
        name="Acme GmbH",
        settings={"timeZone": None, "replyTo": "help@acme.example"},
    )
    assert changed["shop"]["name"] == "Acme GmbH"
    assert changed["shop"]["settings"] == {
        "policy": POLICY.strip(),
        "mailFrom": "Acme <hi@acme.example>",
        "replyTo": "help@acme.example",
    }
    read = await _ok(stack, "GET", f"{SHOPS}/acme", platform)
    assert read == changed
    # What the API answers is what every process reads from the store.
    stored = await ShopStore(stack.store.engine).get("acme")
    assert stored is not None and stored.settings.reply_to == "help@acme.example"
    assert stored.settings.recovery_policy() is not None


async def test_bad_input_is_400_naming_the_field_and_changes_nothing(stack: Stack) -> None:
    platform = await _key(stack, Scope.MANAGE, None)
    bad_id = await stack.http.post(SHOPS, headers=platform, json={"id": "Acme Shop", "name": "A"})
    assert bad_id.status_code == 400
    assert [d["field"] for d in bad_id.json()["details"]] == ["id"]

    bad_policy = await stack.http.post(
        SHOPS,
        headers=platform,
        json={"id": "acme", "name": "Acme", "settings": {"policy": POLICY.replace("3h", "soon")}},
    )
    assert bad_policy.status_code == 400, bad_policy.text
    assert "step 1 (email): delay" in bad_policy.text
    await _ok(stack, "POST", SHOPS, platform, id="acme", name="Acme")

    taken = await stack.http.post(SHOPS, headers=platform, json={"id": "acme", "name": "Again"})
    assert taken.status_code == 409
    bad_change = await stack.http.patch(
        f"{SHOPS}/acme",
        headers=platform,
        json={"settings": {"publicUrl": "not a url", "colour": "blue"}},
    )
    assert bad_change.status_code == 400, bad_change.text
    assert {d["field"] for d in bad_change.json()["details"]} == {"publicUrl", "colour"}
    shop = await _ok(stack, "GET", f"{SHOPS}/acme", platform)
    assert (shop["shop"]["name"], shop["shop"]["settings"]) == ("Acme", {})

    for method in ("GET", "PATCH"):
        missing = await stack.http.request(method, f"{SHOPS}/nobody", headers=platform, json={})
        assert missing.status_code == 404, method


async def test_a_shops_own_key_and_a_reader_are_refused(stack: Stack) -> None:
    await ShopStore(stack.store.engine).add("acme", "Acme")
    shop_manager = await _key(stack, Scope.MANAGE, "acme")
    for method, path in (
        ("GET", SHOPS),
        ("POST", SHOPS),
        ("GET", f"{SHOPS}/acme"),
        ("PATCH", f"{SHOPS}/acme"),
        ("GET", f"{SHOPS}/{DEFAULT_SHOP}"),
    ):
        body = {"id": "other", "name": "Other"} if method == "POST" else {}
        refused = await stack.http.request(method, path, headers=shop_manager, json=body)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["code"] == "forbidden"
    # The key of the default shop (every key made before shops existed) is a shop's key too.
    default_manager = {"Authorization": f"Bearer {stack.manage_key}"}
    assert (await stack.http.get(SHOPS, headers=default_manager)).status_code == 403

    platform_reader = await _key(stack, Scope.READ, None)
    assert (await stack.http.get(SHOPS, headers=platform_reader)).status_code == 200
    change = await stack.http.patch(
        f"{SHOPS}/acme", headers=platform_reader, json={"name": "Renamed"}
    )
    assert change.status_code == 403
    assert (await stack.http.get(SHOPS)).status_code == 401
    stored = await ShopStore(stack.store.engine).list()
    assert [(shop.id, shop.name) for shop in stored] == [
        ("acme", "Acme"),
        (DEFAULT_SHOP, DEFAULT_SHOP),
    ]


@pytest.mark.timeout(600)
async def test_no_input_to_the_shop_routes_gives_a_500(stack: Stack, tmp_path: Path) -> None:
    # The API-wide fuzz runs with a shop's key, which these routes refuse: this one has the
    # platform's, so the bodies and settings are what gets generated.
    platform = await _key(stack, Scope.MANAGE, None)
    token = platform["Authorization"].removeprefix("Bearer ")
    code, output = await _fuzz(stack, tmp_path, token, "--include-path-regex", "^/ecom/v1/shops")
    assert code == 0, output[-6000:]
    assert "test cases" in output.lower() or "passed" in output.lower(), output[-2000:]


async def test_settings_whose_templates_do_not_render_are_refused_before_they_are_stored(
    stack: Stack, tmp_path: Path
) -> None:
    """As `shops add|set` does: the policy is rendered with the shop's templates."""
    platform = await _key(stack, Scope.MANAGE, None)
    broken = tmp_path / "broken-templates"
    subject = broken / "email" / "reminder" / "en" / "subject.txt"
    subject.parent.mkdir(parents=True)
    subject.write_text("{{ first_name ")  # an unclosed tag
    added = await stack.http.post(
        SHOPS,
        headers=platform,
        json={"id": "bent", "name": "Bent", "settings": {"templatesDir": str(broken)}},
    )
    assert added.status_code == 400, added.text
    assert "subject.txt" in added.text
    assert await ShopStore(stack.store.engine).get("bent") is None

    await _ok(stack, "POST", SHOPS, platform, id="fine", name="Fine")
    missing = await stack.http.patch(
        f"{SHOPS}/fine",
        headers=platform,
        json={"settings": {"templatesDir": str(tmp_path / "nowhere")}},
    )
    assert missing.status_code == 400 and "no such folder" in missing.text, missing.text
    unknown = await stack.http.patch(
        f"{SHOPS}/fine",
        headers=platform,
        json={"settings": {"policy": POLICY.replace("reminder", "no_such_template")}},
    )
    assert unknown.status_code == 400 and "no_such_template" in unknown.text, unknown.text
    kept = await ShopStore(stack.store.engine).get("fine")
    assert kept is not None and kept.settings.templates_dir is None and kept.settings.policy is None
