"""The DKIM configuration is refused where it is made: the deployment's at worker start (a half
configuration, a bad key, a d= that does not align with From), a shop's by `shops set` and by the
shops API (on each database), and the private key appears in no answer."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError
from typer.testing import CliRunner

from cli.main import app
from domain.access import Scope
from domain.dkim import read_private_key
from domain.errors import InvalidInputError
from store.api_keys import ApiKeyStore
from store.shops import ShopStore, open_dkim
from store.sql import SqlStore
from tests.api.stack import Stack
from tests.operators.conftest import CliResult
from tests.support import engine_settings
from workers.link_secret import webhook_secret_box
from workers.settings import Settings
from workers.worker import deployment_dkim


def test_a_half_configuration_names_what_is_missing(key_file: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        engine_settings(0, dkim_domain="shop.test", dkim_private_key_file=key_file)
    assert "CHECKOUT_RECOVERY_DKIM_SELECTOR" in str(refused.value)


def test_a_domain_that_does_not_align_with_from_is_refused(key_file: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        engine_settings(
            0, dkim_domain="other.example", dkim_selector="mail", dkim_private_key_file=key_file
        )
    assert "does not align" in str(refused.value) or "nor a parent" in str(refused.value)
    # A parent of the From domain aligns (From recovery@shop.test, d=shop.test; here a child).
    parent = engine_settings(
        0,
        mail_from="Shop <hi@news.shop.test>",
        dkim_domain="shop.test",
        dkim_selector="mail",
        dkim_private_key_file=key_file,
    )
    signer = deployment_dkim(parent)
    assert signer is not None and signer.domain == "shop.test"


_EC_KEY = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)


@pytest.mark.parametrize("content", [b"not a key", _EC_KEY], ids=["garbage", "not-rsa"])
def test_a_key_that_cannot_sign_stops_the_worker_naming_the_file(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(content)
    settings = engine_settings(
        0, dkim_domain="shop.test", dkim_selector="mail", dkim_private_key_file=path
    )
    with pytest.raises(InvalidInputError) as refused:
        deployment_dkim(settings)
    assert "CHECKOUT_RECOVERY_DKIM_PRIVATE_KEY_FILE" in str(refused.value)
    assert "PRIVATE KEY" not in str(refused.value)


def test_no_dkim_settings_no_signer() -> None:
    assert deployment_dkim(engine_settings(0)) is None


# --- a shop's key, set with `shops set` ------------------------------------------------------

DEPLOYMENT = {
    "CHECKOUT_RECOVERY_MAIL_FROM": "Platform <recovery@platform.example>",
    "COLUMNS": "200",
}


@pytest.fixture
def env(store: SqlStore, database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "CHECKOUT_RECOVERY_DATABASE_URL": database_url,
        "CHECKOUT_RECOVERY_DATA_DIR": str(tmp_path / "data"),
        **DEPLOYMENT,
    }


async def _cli(env: dict[str, str], *args: str) -> CliResult:
    def invoke() -> CliResult:
        result = CliRunner().invoke(app, list(args), env=env)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return await asyncio.to_thread(invoke)


def _secret_parts(pem: bytes) -> list[str]:
    """Lines of the key's PEM body, any of which in an output would be a leak: its last ones
    (the primes' CRT values; the first ones hold the modulus, which the public record shows)."""
    key = read_private_key(pem)
    return [line for line in key.pem.splitlines() if "-----" not in line][-5:-1]


async def test_shops_set_seals_the_key_and_shows_only_its_fingerprint(
    env: dict[str, str], store: SqlStore, tmp_path: Path, shop_pem: bytes
) -> None:
    key_file = tmp_path / "acme.pem"
    key_file.write_bytes(shop_pem)
    added = await _cli(
        env, "shops", "add", "acme", "--name", "Acme", "--mail-from", "hi@acme.example"
    )
    assert added.code == 0, added.stderr
    dkim_options = ("--dkim-domain", "acme.example", "--dkim-selector", "s1")

    changed = await _cli(
        env, "shops", "set", "acme", *dkim_options, "--dkim-key-file", str(key_file)
    )
    shown = await _cli(env, "shops", "show", "acme", "--json")
    listed = await _cli(env, "shops", "list", "--json")

    assert changed.code == 0, changed.stderr
    expected = read_private_key(shop_pem)
    assert f"s1._domainkey.acme.example: {expected.txt_record}" in changed.stdout.replace("\n", "")
    shop = json.loads(shown.stdout)["shop"]
    assert shop["settings"]["dkim"] == {
        "domain": "acme.example",
        "selector": "s1",
        "fingerprint": expected.fingerprint,
    }
    assert shop["effective"]["dkim"]["from"] == "shop"
    for output in (changed.stdout, shown.stdout, listed.stdout, changed.stderr):
        assert "sealed1." not in output and "PRIVATE KEY" not in output
        assert not [part for part in _secret_parts(shop_pem) if part in output]
    stored = await ShopStore(store.engine).get("acme")
    assert stored is not None and stored.settings.dkim is not None
    opened = open_dkim(
        webhook_secret_box(Settings(data_dir=tmp_path / "data")), stored.settings.dkim
    )
    assert opened.fingerprint == expected.fingerprint

    # The From address changed to a domain the key does not align with: refused, nothing changed.
    moved = await _cli(env, "shops", "set", "acme", "--mail-from", "hi@elsewhere.example")
    assert moved.code == 2 and "dkim" in moved.stderr and "align" in moved.stderr
    cleared = await _cli(env, "shops", "set", "acme", "--clear", "dkim")
    assert cleared.code == 0, cleared.stderr
    gone = await ShopStore(store.engine).get("acme")
    assert gone is not None and gone.settings.dkim is None


async def test_shops_set_refuses_a_misaligned_domain_half_options_and_a_bad_key(
    env: dict[str, str], store: SqlStore, tmp_path: Path, shop_pem: bytes
) -> None:
    key_file = tmp_path / "acme.pem"
    key_file.write_bytes(shop_pem)
    bad_file = tmp_path / "bad.pem"
    bad_file.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    await _cli(env, "shops", "add", "acme", "--name", "Acme")
    key = ("--dkim-key-file", str(key_file))

    # No From of its own: the deployment's (platform.example) is what d= must align with.
    misaligned = await _cli(
        env, "shops", "set", "acme", "--dkim-domain", "acme.example", "--dkim-selector", "s1", *key
    )
    half = await _cli(env, "shops", "set", "acme", "--dkim-domain", "platform.example", *key)
    bad = await _cli(
        env,
        "shops",
        "set",
        "acme",
        "--dkim-domain",
        "platform.example",
        "--dkim-selector",
        "s1",
        "--dkim-key-file",
        str(bad_file),
    )

    assert misaligned.code == 2 and "align" in misaligned.stderr, misaligned
    assert half.code == 2 and "--dkim-selector" in half.stderr, half
    assert bad.code == 2 and "not a PEM private key" in bad.stderr, bad
    stored = await ShopStore(store.engine).get("acme")
    assert stored is not None and stored.settings.dkim is None


# --- a shop's key over the API ----------------------------------------------------------------


async def _platform(stack: Stack) -> dict[str, str]:
    _, token = await ApiKeyStore(stack.store.engine).create(
        "shops", frozenset({Scope.MANAGE, Scope.READ}), shop_id=None
    )
    return {"Authorization": f"Bearer {token}"}


async def test_the_api_seals_a_shops_key_and_never_answers_it(
    stack: Stack, shop_pem: bytes
) -> None:
    headers = await _platform(stack)
    made = await stack.http.post(
        "/ecom/v1/shops",
        headers=headers,
        json={"id": "bazaar", "name": "Bazaar", "settings": {"mailFrom": "hi@news.bazaar.example"}},
    )
    assert made.status_code == 201, made.text
    pem = shop_pem.decode()
    dkim: dict[str, Any] = {"domain": "bazaar.example", "selector": "s1", "privateKey": pem}

    changed = await stack.http.patch(
        "/ecom/v1/shops/bazaar", headers=headers, json={"settings": {"dkim": dkim}}
    )
    read = await stack.http.get("/ecom/v1/shops/bazaar", headers=headers)
    misaligned = await stack.http.patch(
        "/ecom/v1/shops/bazaar",
        headers=headers,
        json={"settings": {"dkim": {**dkim, "domain": "other.example"}}},
    )
    forged = await stack.http.patch(
        "/ecom/v1/shops/bazaar",
        headers=headers,
        json={
            "settings": {
                "dkim": {
                    "domain": "bazaar.example",
                    "selector": "s1",
                    "fingerprint": "sha256:0000000000000000",
                    "sealedKey": "sealed1.x.y",
                }
            }
        },
    )

    assert changed.status_code == 200, changed.text
    expected = read_private_key(shop_pem)
    assert changed.json()["shop"]["settings"]["dkim"] == {
        "domain": "bazaar.example",
        "selector": "s1",
        "fingerprint": expected.fingerprint,
    }
    for answer in (changed, read, misaligned, forged):
        assert "sealed1." not in answer.text and "PRIVATE KEY" not in answer.text
        assert not [part for part in _secret_parts(shop_pem) if part in answer.text]
    assert misaligned.status_code == 400 and "align" in misaligned.text, misaligned.text
    assert forged.status_code == 400, forged.text
    stored = await ShopStore(stack.store.engine).get("bazaar")
    assert stored is not None and stored.settings.dkim is not None
    assert stored.settings.dkim.fingerprint == expected.fingerprint
