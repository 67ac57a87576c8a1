"""Payload encryption: what reaches Temporal is unreadable, and what we wrote always reads back."""

import base64
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.client import WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from codec.payload_codec import (
    ENCODING,
    KEY_ID_METADATA,
    AesGcmCodec,
    PayloadAuthenticationError,
    UnknownKeyError,
    generate_codec_key,
    parse_codec_keys,
)
from domain.flow import RecoveryInput
from tests.support import sample_checkout
from workers.policy_files import load_policy
from workers.settings import Settings
from workers.temporal_client import DATA_CONVERTER, codec_from_settings, data_converter_for
from workers.worker import SANDBOX_RUNNER, WORKFLOWS

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()
HISTORIES = sorted((Path(__file__).parent.parent / "workflows" / "histories").glob("*.json"))


def _codec(text: str) -> AesGcmCodec:
    return AesGcmCodec(parse_codec_keys(text))


def _flow() -> RecoveryInput:
    checkout = sample_checkout(id="chk-1", createdDate="2025-01-01T10:00:00Z")
    now = datetime(2025, 1, 1, 10, tzinfo=UTC)
    return RecoveryInput(
        checkout=checkout, policy=load_policy("default"), abandoned_at=now, reported_at=now
    )


async def test_the_workflow_input_round_trips_through_the_encrypting_converter() -> None:
    converter = data_converter_for(Settings(codec_keys=f"a:{KEY_A}"))
    flow = _flow()

    [payload] = await converter.encode([flow])
    [decoded] = await converter.decode([payload], [RecoveryInput])

    assert payload.metadata["encoding"] == ENCODING
    assert payload.metadata[KEY_ID_METADATA] == b"a"
    assert decoded == flow


async def test_decrypting_restores_the_original_payload_exactly() -> None:
    codec = _codec(f"a:{KEY_A}")
    original = Payload(
        metadata={"encoding": b"json/plain", "messageType": b"RecoveryInput"},
        data=b'{"email":"ada@example.com"}',
    )

    [encrypted] = await codec.encode([original])
    [decrypted] = await codec.decode([encrypted])

    assert decrypted == original
    # The inner metadata travels inside the ciphertext, not beside it.
    assert set(encrypted.metadata) == {"encoding", KEY_ID_METADATA}


async def test_ciphertext_differs_every_time_and_never_shows_the_buyer() -> None:
    codec = _codec(f"a:{KEY_A}")
    [plain] = await DATA_CONVERTER.encode([_flow()])
    assert b"ada@example.com" in plain.data  # the control: without the codec it is readable

    first, second = await codec.encode([plain, plain])

    assert first.data != second.data
    assert first.data[:12] != second.data[:12]  # a fresh nonce each time
    for encrypted in (first, second):
        raw = encrypted.SerializeToString()
        for secret in (b"ada@example.com", b"Ada", b"Lovelace", b"json/plain"):
            assert secret not in raw


async def test_rotation_reads_old_payloads_and_writes_with_the_new_key() -> None:
    old = _codec(f"A:{KEY_A}")
    rotated = _codec(f"B:{KEY_B},A:{KEY_A}")
    retired = _codec(f"B:{KEY_B}")
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'"hello"')

    [written_before] = await old.encode([original])
    [written_after] = await rotated.encode([original])

    assert written_before.metadata[KEY_ID_METADATA] == b"A"
    assert written_after.metadata[KEY_ID_METADATA] == b"B"
    assert await rotated.decode([written_before, written_after]) == [original, original]
    assert await retired.decode([written_after]) == [original]
    with pytest.raises(UnknownKeyError, match="key id 'A'"):
        await retired.decode([written_before])


async def test_an_unknown_key_id_names_the_id_and_the_setting() -> None:
    [encrypted] = await _codec(f"old-key:{KEY_A}").encode([Payload(data=b"x")])

    with pytest.raises(UnknownKeyError) as caught:
        await _codec(f"new-key:{KEY_B}").decode([encrypted])

    message = str(caught.value)
    assert "'old-key'" in message and "CHECKOUT_RECOVERY_CODEC_KEYS" in message
    assert KEY_A not in message and KEY_B not in message


async def test_tampered_ciphertext_fails_authentication() -> None:
    codec = _codec(f"a:{KEY_A}")
    [encrypted] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
    tampered = Payload()
    tampered.CopyFrom(encrypted)
    flipped = bytearray(tampered.data)
    flipped[-1] ^= 0x01
    tampered.data = bytes(flipped)
    truncated = Payload(metadata=dict(encrypted.metadata), data=encrypted.data[:10])

    for bad in (tampered, truncated):
        with pytest.raises(PayloadAuthenticationError, match="key id 'a' failed authentication"):
            await codec.decode([bad])


async def test_a_payload_relabelled_with_another_key_id_fails_authentication() -> None:
    """The key id is bound into the ciphertext: editing the metadata does not redirect it."""
    # Two ids for the same key material: only the binding can tell them apart.
    codec = _codec(f"a:{KEY_A},b:{KEY_A}")
    [encrypted] = await codec.encode([Payload(data=b"x")])
    encrypted.metadata[KEY_ID_METADATA] = b"b"

    with pytest.raises(PayloadAuthenticationError, match="key id 'b'"):
        await codec.decode([encrypted])


async def test_unencrypted_payloads_pass_through_decode_untouched() -> None:
    codec = _codec(f"a:{KEY_A}")
    plain = await DATA_CONVERTER.encode([_flow(), "text", None])

    assert await codec.decode(plain) == plain


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_histories_recorded_before_encryption_still_replay_with_it(path: Path) -> None:
    history = WorkflowHistory.from_json(f"abandoned-checkout-{path.stem}", path.read_text())
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=data_converter_for(Settings(codec_keys=f"a:{KEY_A}")),
        workflow_runner=SANDBOX_RUNNER,
    )

    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (KEY_A, "entry 1 is not in the form id:base64key"),
        (f"a:{KEY_A},", "entry 2 is empty"),
        (f"a:{KEY_A},b:", "entry 2 is not in the form id:base64key"),
        (f"a:{KEY_A},a:{KEY_B}", "entry 2: key id 'a' appears twice"),
        (f"a:{base64.b64encode(b'k' * 16).decode()}", "entry 1 ('a'): the key is 16 bytes"),
        ("a:not base64 at all!", "entry 1 ('a'): the key is not base64"),
        (f"bad id:{KEY_A}", "entry 1: the id may hold only"),
    ],
)
def test_malformed_keys_are_refused_without_echoing_the_key(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="codec key ") as caught:
        parse_codec_keys(text)

    assert message in str(caught.value)
    for material in (KEY_A, KEY_B, "not base64 at all", base64.b64encode(b"k" * 16).decode()):
        assert material not in str(caught.value)


def test_keys_parse_in_order_and_never_show_in_repr() -> None:
    urlsafe_unpadded = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    keys = parse_codec_keys(f" B:{KEY_B} , A:{KEY_A},c:{urlsafe_unpadded}")

    assert list(keys) == ["B", "A", "c"]
    assert keys.current_id == "B"
    assert keys["A"] == b"A" * 32
    assert KEY_B not in repr(keys) and "BBBB" not in repr(keys)


def test_generated_keys_parse_and_differ() -> None:
    first, second = generate_codec_key(), generate_codec_key()

    keys = parse_codec_keys(f"{first},{second}")

    assert first != second
    assert len(keys) == 2
    assert all(len(key) == 32 for key in keys.values())
    assert all(len(key_id) == 8 for key_id in keys)


def test_codec_from_settings_is_off_unless_keys_are_set() -> None:
    assert codec_from_settings(Settings()) is None
    assert codec_from_settings(Settings(codec_keys="  ")) is None
    assert data_converter_for(Settings()) is DATA_CONVERTER

    codec = codec_from_settings(Settings(codec_keys=f"B:{KEY_B},A:{KEY_A}"))

    assert codec is not None
    assert codec.current_key_id == "B" and codec.key_ids == ["B", "A"]
    with pytest.raises(ValueError, match="entry 1"):
        codec_from_settings(Settings(codec_keys="oops"))


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHECKOUT_RECOVERY_CODEC_KEYS", f"env-key:{KEY_A}")

    codec = codec_from_settings(Settings())

    assert codec is not None and codec.key_ids == ["env-key"]


async def test_failure_messages_are_encrypted_too() -> None:
    """An exception text may quote the buyer; with encryption on it is not stored in plain."""
    converter = data_converter_for(Settings(codec_keys=f"a:{KEY_A}"))
    failure = Failure()

    await converter.encode_failure(ApplicationError("refused ada@example.com"), failure)

    assert b"ada@example.com" not in failure.SerializeToString()
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    decoded = await converter.decode_failure(failure)
    assert str(decoded) == "refused ada@example.com"
