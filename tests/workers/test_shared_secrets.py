"""Secrets replicas share: from the environment, or a file in the data folder, never in plain text
where it should not be.

Two processes with separate data folders agree when the variables are set, and do not when they
are not (the case the start-up warning names the variable for). Subscribers' signing secrets are
sealed in the store, on both databases, and a process with other keys cannot open them.
"""

import base64
import logging
import os
import secrets
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from codec.payload_codec import generate_codec_key
from store.schema import subscriptions
from store.secret_box import SecretBox, SecretUnreadableError
from store.sql import SqlStore
from store.subscriptions import SubscriptionStore
from workers.link_secret import (
    DASHBOARD_SECRET_ENV,
    WEBHOOK_KEYS_ENV,
    dashboard_secret,
    link_signer_for,
    local_secret,
    webhook_secret_box,
)
from workers.settings import Settings

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def _settings(data_dir: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=data_dir, **overrides)


def test_the_environment_gives_processes_without_a_shared_folder_the_same_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DASHBOARD_SECRET_ENV, "dashboard-" + "s" * 32)
    monkeypatch.setenv(WEBHOOK_KEYS_ENV, generate_codec_key())
    monkeypatch.setenv("CHECKOUT_RECOVERY_LINK_SIGNING_SECRET", "link-" + "l" * 32)
    one, two = (
        Settings(data_dir=tmp_path / "one"),
        Settings(data_dir=tmp_path / "two"),
    )
    assert dashboard_secret(one) == dashboard_secret(two) == "dashboard-" + "s" * 32
    sealed = webhook_secret_box(one).seal(WEBHOOK_SECRET, "sub-1")
    assert webhook_secret_box(two).open(sealed, "sub-1") == WEBHOOK_SECRET
    link = link_signer_for(one).unsubscribe_token("c-1")
    assert link_signer_for(two).verify_unsubscribe(link) == "c-1"
    # Nothing was written to either folder.
    assert not (tmp_path / "one").exists() and not (tmp_path / "two").exists()


def test_without_the_variables_each_folder_has_its_own_secrets_and_a_warning_names_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one, two = _settings(tmp_path / "one"), _settings(tmp_path / "two")
    with caplog.at_level(logging.WARNING, logger="workers.link_secret"):
        assert dashboard_secret(one) == dashboard_secret(one)  # kept in the folder
        assert dashboard_secret(one) != dashboard_secret(two)
        sealed = webhook_secret_box(one).seal(WEBHOOK_SECRET, "sub-1")
        with pytest.raises(SecretUnreadableError, match=WEBHOOK_KEYS_ENV):
            webhook_secret_box(two).open(sealed, "sub-1")
        assert webhook_secret_box(one).open(sealed, "sub-1") == WEBHOOK_SECRET
    warned = caplog.text
    assert DASHBOARD_SECRET_ENV in warned and WEBHOOK_KEYS_ENV in warned
    secret_file = tmp_path / "one" / "dashboard-session-secret"
    assert secret_file.stat().st_mode & 0o077 == 0
    assert secret_file.read_text() not in warned


def _read_secret(folder: str) -> str:
    return local_secret(Path(folder), "race")


def test_processes_generating_the_secret_together_all_read_the_one_written(
    tmp_path: Path,
) -> None:
    with ProcessPoolExecutor(max_workers=4) as pool:
        found = list(pool.map(_read_secret, [str(tmp_path)] * 16))
    assert len(set(found)) == 1 and len(found[0]) >= 32, found
    assert sorted(os.listdir(tmp_path)) == ["race"]  # no draft left behind


def test_a_sealed_secret_opens_only_for_its_row_and_with_its_key() -> None:
    key = secrets.token_bytes(32)
    box = SecretBox({"a": key}, WEBHOOK_KEYS_ENV)
    sealed = box.seal(WEBHOOK_SECRET, "sub-1")
    assert WEBHOOK_SECRET not in sealed and len(sealed) <= 200
    assert box.open(sealed, "sub-1") == WEBHOOK_SECRET
    with pytest.raises(SecretUnreadableError, match="another row"):
        box.open(sealed, "sub-2")
    rotated = SecretBox({"b": secrets.token_bytes(32), "a": key}, WEBHOOK_KEYS_ENV)
    assert rotated.open(sealed, "sub-1") == WEBHOOK_SECRET  # an old key still opens
    assert rotated.open(rotated.seal(WEBHOOK_SECRET, "sub-1"), "sub-1") == WEBHOOK_SECRET
    with pytest.raises(SecretUnreadableError, match="not among"):
        SecretBox({"c": secrets.token_bytes(32)}, WEBHOOK_KEYS_ENV).open(sealed, "sub-1")
    # The longest secret a subscriber may give still fits the column.
    longest = "whsec_" + base64.b64encode(b"x" * 64).decode()
    assert len(box.seal(longest, "0" * 36)) <= 200
    assert key.hex() not in repr(box) and base64.b64encode(key).decode() not in repr(box)


async def test_subscription_secrets_rest_sealed_in_the_store(
    database_url: str, tmp_path: Path
) -> None:
    store = SqlStore.from_url(database_url)
    await store.create_schema()
    try:
        settings = _settings(tmp_path, webhook_secret_keys=SecretStr(generate_codec_key()))
        sealed_store = SubscriptionStore(store.engine, webhook_secret_box(settings))
        made = await sealed_store.add("https://hooks.example/a", WEBHOOK_SECRET, frozenset({"*"}))
        async with store.engine.connect() as conn:
            at_rest = (await conn.execute(select(subscriptions.c.secret))).scalar_one()
        assert WEBHOOK_SECRET not in at_rest and at_rest.startswith("sealed1.")
        assert await sealed_store.target(made.id) == ("https://hooks.example/a", WEBHOOK_SECRET)

        # A process given other keys cannot sign with it, and says which setting to fix.
        other = _settings(tmp_path, webhook_secret_keys=SecretStr(generate_codec_key()))
        with pytest.raises(SecretUnreadableError, match=WEBHOOK_KEYS_ENV):
            await SubscriptionStore(store.engine, webhook_secret_box(other)).target(made.id)

        # A secret stored before sealing existed is still read as it is.
        async with store.engine.begin() as conn:
            await conn.execute(update(subscriptions).values(secret=WEBHOOK_SECRET))
        assert await sealed_store.target(made.id) == ("https://hooks.example/a", WEBHOOK_SECRET)
    finally:
        await store.close()


def test_setting_the_keys_later_still_opens_what_the_data_folders_key_sealed(
    tmp_path: Path,
) -> None:
    before = webhook_secret_box(_settings(tmp_path))
    sealed = before.seal(WEBHOOK_SECRET, "sub-1")

    configured = generate_codec_key()
    after = webhook_secret_box(_settings(tmp_path, webhook_secret_keys=SecretStr(configured)))
    assert after.open(sealed, "sub-1") == WEBHOOK_SECRET
    # New secrets are sealed with the configured key: a process without the folder opens them.
    resealed = after.seal(WEBHOOK_SECRET, "sub-2")
    elsewhere = tmp_path / "elsewhere"
    other = webhook_secret_box(_settings(elsewhere, webhook_secret_keys=SecretStr(configured)))
    assert other.open(resealed, "sub-2") == WEBHOOK_SECRET
    with pytest.raises(SecretUnreadableError):
        other.open(sealed, "sub-1")
