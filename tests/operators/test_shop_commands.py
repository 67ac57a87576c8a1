"""`checkout-recovery shops add|list|show|set` and `policy check --shop`, on each database the
store supports.

Commands run in-process through typer's CliRunner with the database in their environment (on a
thread of their own: each runs its own event loop); one runs as the installed command.
"""

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from domain.shops import DEFAULT_SHOP, ShopSettings
from store.shops import ShopStore
from store.sql import SqlStore
from tests.operators.conftest import CLI, CliResult
from tests.support import REPO

POLICY = """
name = "acme-own"
time_zone = "Europe/Paris"

[[steps]]
delay = "3h"
action = "email"
template = "reminder"
"""
DEPLOYMENT = {
    "CHECKOUT_RECOVERY_SHOP_NAME": "Platform Shop",
    "CHECKOUT_RECOVERY_MAIL_FROM": "Platform <recovery@platform.example>",
    "CHECKOUT_RECOVERY_PUBLIC_URL": "https://recover.platform.example",
    "CHECKOUT_RECOVERY_DEFAULT_LANGUAGE": "en",
}


@pytest.fixture
def env(store: SqlStore, database_url: str, tmp_path: Path) -> dict[str, str]:
    """The commands' settings: the test's database (the fixture made its schema)."""
    return {
        "CHECKOUT_RECOVERY_DATABASE_URL": database_url,
        "CHECKOUT_RECOVERY_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
        **DEPLOYMENT,
    }


async def _cli(env: dict[str, str], *args: str) -> CliResult:
    def invoke() -> CliResult:
        result = CliRunner().invoke(app, list(args), env=env)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return await asyncio.to_thread(invoke)


async def _json(env: dict[str, str], *args: str) -> Any:
    result = await _cli(env, *args, "--json")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def _policy_file(tmp_path: Path, text: str = POLICY) -> str:
    path = tmp_path / "acme.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


async def test_the_default_shop_shows_exactly_the_deployment_settings(
    env: dict[str, str],
) -> None:
    shown = (await _json(env, "shops", "show", DEFAULT_SHOP))["shop"]
    assert shown["settings"] == {}
    effective = shown["effective"]
    assert {item["from"] for item in effective.values()} == {"deployment"}
    assert {name: effective[name]["value"] for name in ("shopName", "mailFrom", "publicUrl")} == {
        "shopName": "Platform Shop",
        "mailFrom": "Platform <recovery@platform.example>",
        "publicUrl": "https://recover.platform.example",
    }
    assert effective["policy"]["value"] is None  # the engine's, as before shops


async def test_a_shop_is_added_listed_shown_and_changed(
    env: dict[str, str], store: SqlStore, tmp_path: Path
) -> None:
    added = await _json(
        env,
        "shops",
        "add",
        "acme",
        "--name",
        "Acme Ltd",
        "--policy",
        _policy_file(tmp_path),
        "--mail-from",
        "Acme <hi@acme.example>",
        "--time-zone",
        "Europe/Paris",
    )
    assert added["shop"]["settings"]["mailFrom"] == "Acme <hi@acme.example>"
    listed = await _json(env, "shops", "list")
    assert [shop["id"] for shop in listed["shops"]] == ["acme", DEFAULT_SHOP]

    effective = (await _json(env, "shops", "show", "acme"))["shop"]["effective"]
    assert effective["policy"] == {"value": "acme-own", "from": "shop"}
    assert effective["mailFrom"] == {"value": "Acme <hi@acme.example>", "from": "shop"}
    assert effective["shopName"] == {"value": "Platform Shop", "from": "deployment"}

    changed = await _json(
        env,
        "shops",
        "set",
        "acme",
        "--shop-name",
        "Acme",
        "--clear",
        "time-zone",
        "--clear",
        "mail-from",
    )
    effective = changed["shop"]["effective"]
    assert effective["shopName"] == {"value": "Acme", "from": "shop"}
    assert effective["mailFrom"]["from"] == "deployment"
    assert effective["timeZone"] == {"value": None, "from": "deployment"}
    # What the command changed is what every process reads from the store.
    stored = await ShopStore(store.engine).get("acme")
    assert stored is not None
    assert stored.name == "Acme Ltd"
    assert stored.settings == ShopSettings(policy=POLICY, shop_name="Acme")

    table = await _cli(env, "shops", "show", "acme")
    assert table.code == 0, table.stderr
    assert "shopName" in table.stdout and "Acme" in table.stdout and "deployment" in table.stdout


async def test_bad_input_exits_2_naming_it_and_an_unknown_shop_exits_3(
    env: dict[str, str], store: SqlStore, tmp_path: Path
) -> None:
    bad_slug = await _cli(env, "shops", "add", "Acme Shop", "--name", "Acme")
    assert (bad_slug.code, bad_slug.stdout) == (2, "")
    assert "shop 'Acme Shop': a shop id is 1 to 63 lowercase letters" in bad_slug.stderr

    bad_policy = _policy_file(tmp_path, POLICY.replace('"3h"', '"3 hours"'))
    refused = await _cli(env, "shops", "add", "acme", "--name", "Acme", "--policy", bad_policy)
    assert refused.code == 2
    assert f"recovery policy {bad_policy}" in refused.stderr
    assert "step 1 (email): delay" in refused.stderr

    await _json(env, "shops", "add", "acme", "--name", "Acme")
    taken = await _cli(env, "shops", "add", "acme", "--name", "Again")
    assert (taken.code, taken.stderr) == (2, "error: a shop with id 'acme' exists already\n")

    bad_values = await _cli(
        env, "shops", "set", "acme", "--mail-from", "nobody", "--public-url", "acme.example"
    )
    assert bad_values.code == 2
    assert "--mail-from: not an email address" in bad_values.stderr
    assert "--public-url: 'acme.example' is not an http(s) URL" in bad_values.stderr
    missing_folder = await _cli(env, "shops", "set", "acme", "--templates-dir", "/no/such")
    assert (missing_folder.code, missing_folder.stderr) == (
        2,
        "error: --templates-dir /no/such: no such folder\n",
    )
    stored = await ShopStore(store.engine).get("acme")
    assert stored is not None and stored.settings == ShopSettings()

    for args in (
        ("shops", "show", "nobody"),
        ("shops", "set", "nobody", "--shop-name", "X"),
        ("policy", "check", "--shop", "nobody"),
    ):
        unknown = await _cli(env, *args)
        assert unknown.code == 3, args
        assert "no shop with id 'nobody'" in unknown.stderr


async def test_policy_check_uses_the_shops_policy_and_its_templates(
    env: dict[str, str], tmp_path: Path
) -> None:
    templates = tmp_path / "acme-templates"
    subject = templates / "email/reminder/en/subject.txt"
    subject.parent.mkdir(parents=True)
    subject.write_text("Acme: your cart", encoding="utf-8")
    await _json(
        env,
        "shops",
        "add",
        "acme",
        "--name",
        "Acme",
        "--policy",
        _policy_file(tmp_path),
        "--templates-dir",
        str(templates),
    )

    facts = await _json(env, "policy", "check", "--shop", "acme")
    assert facts["policy"] == "acme-own"
    assert facts["buyerTimeZone"] == "Europe/Paris"
    assert facts["overriddenTemplates"] == ["email/reminder/en/subject.txt"]
    # The deployment's own check knows nothing of the shop's templates.
    plain = await _json(env, "policy", "check", "default")
    assert plain["overriddenTemplates"] == []

    # An override that breaks is found by the shop's check, and refused by `shops set`.
    subject.write_text("{{ buyer.nickname }}", encoding="utf-8")
    broken = await _cli(env, "policy", "check", "--shop", "acme")
    assert broken.code == 2
    assert "invalid recovery policy of the shop acme" in broken.stderr
    assert f"{subject} line 1: 'buyer' is undefined" in broken.stderr
    other = tmp_path / "other-templates"
    other.mkdir()
    (other / "email/reminder/en").mkdir(parents=True)
    (other / "email/reminder/en/subject.txt").write_text("{{ buyer.nickname }}")
    refused = await _cli(env, "shops", "set", "acme", "--templates-dir", str(other))
    assert refused.code == 2
    assert "'buyer' is undefined" in refused.stderr


async def test_the_installed_command_shows_a_shop(env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        CLI,
        "shops",
        "show",
        DEFAULT_SHOP,
        "--json",
        env={**os.environ, **env},
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert json.loads(out)["shop"]["id"] == DEFAULT_SHOP


async def test_a_key_is_made_only_for_a_shop_the_deployment_serves(env: dict[str, str]) -> None:
    unknown = await _cli(
        env,
        "keys",
        "create",
        "--scope",
        "abandoned-checkouts:read",
        "--name",
        "ops",
        "--shop",
        "nobody",
    )
    assert unknown.code == 3, unknown.stderr
    assert "no shop with id 'nobody'" in unknown.stderr
    assert (await _cli(env, "shops", "add", "acme", "--name", "Acme")).code == 0
    made = await _json(
        env,
        "keys",
        "create",
        "--scope",
        "abandoned-checkouts:read",
        "--name",
        "ops",
        "--shop",
        "acme",
    )
    assert made["shop"] == "acme"
    assert (
        await _json(env, "keys", "create", "--scope", "abandoned-checkouts:read", "--name", "own")
    )["shop"] == DEFAULT_SHOP
