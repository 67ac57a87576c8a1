"""AES-256-GCM encryption of every Temporal payload, so buyer PII never rests readable in Temporal.

The workflow input carries the buyer's email and name; without a codec, anyone who can read a
workflow history (Web UI, CLI, a Temporal Cloud operator) reads them too. With the codec, the
Temporal service stores only ciphertext; workers, our API and our codec endpoint hold the keys.

Wire format of an encrypted payload:

- metadata `encoding` = `binary/encrypted`, `encryption-key-id` = the id of the key used;
- data = 12-byte random nonce || AES-GCM ciphertext (with its 16-byte tag) of the original
  payload's protobuf bytes, so its own metadata (`json/plain`, message type, ...) is hidden too
  and comes back unchanged.

The key id is also bound into the ciphertext as associated data: a payload whose key-id metadata
was edited fails authentication instead of being decrypted under the wrong name.

Keys are configured as "id:base64key" entries separated by commas. The first key encrypts; every
key decrypts. Rotating therefore means putting a new key first and keeping the old ones until no
history that still needs reading was written with them.
"""

import base64
import binascii
import os
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Key ids read back from payloads are untrusted input that ends up in error messages.
_SHOWN_ID_CHARS = 64


class CodecKeys(Mapping[str, bytes]):
    """Key ids mapped to 32-byte AES keys, in configured order: the first one encrypts.

    Its repr names the ids only, so a settings dump or a traceback never shows key material.
    """

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise ValueError("at least one codec key is needed")
        for key_id, key in keys.items():
            if not _KEY_ID.match(key_id):
                raise ValueError(f"codec key id {_shown(key_id)} is not a valid key id")
            if len(key) != KEY_BYTES:
                raise ValueError(
                    f"codec key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}"
                )
        self._keys = dict(keys)

    @property
    def current_id(self) -> str:
        """The id of the key new payloads are encrypted with."""
        return next(iter(self._keys))

    def __getitem__(self, key_id: str) -> bytes:
        return self._keys[key_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"CodecKeys(ids={list(self._keys)!r})"


class PayloadDecryptionError(Exception):
    """An encrypted payload this codec cannot read. The message names the key id, never a key."""


class UnknownKeyError(PayloadDecryptionError):
    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"payload was encrypted with key id {_shown(key_id)}, which is not among the "
            "configured codec keys (CHECKOUT_RECOVERY_CODEC_KEYS); add that key to read it"
        )
        self.key_id = key_id


class PayloadAuthenticationError(PayloadDecryptionError):
    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"payload encrypted with key id {_shown(key_id)} failed authentication: it was "
            "altered, or the configured key with that id is not the one it was written with"
        )
        self.key_id = key_id


def parse_codec_keys(text: str) -> CodecKeys:
    """Parse "id:base64key,id:base64key"; the error names the entry at fault, never its key."""
    keys: dict[str, bytes] = {}
    for position, raw in enumerate(text.split(","), start=1):
        entry = raw.strip()
        if not entry:
            raise ValueError(f"codec key entry {position} is empty (stray comma?)")
        key_id, sep, encoded = entry.partition(":")
        key_id, encoded = key_id.strip(), encoded.strip()
        if not sep or not key_id or not encoded:
            raise ValueError(f"codec key entry {position} is not in the form id:base64key")
        if not _KEY_ID.match(key_id):
            raise ValueError(
                f"codec key entry {position}: the id may hold only letters, digits, '.', '_' "
                "and '-' (at most 64, starting with a letter or digit)"
            )
        if key_id in keys:
            raise ValueError(f"codec key entry {position}: key id {key_id!r} appears twice")
        key = _b64decode(encoded)
        if key is None:
            raise ValueError(f"codec key entry {position} ({key_id!r}): the key is not base64")
        if len(key) != KEY_BYTES:
            raise ValueError(
                f"codec key entry {position} ({key_id!r}): the key is {len(key)} bytes; "
                f"AES-256 needs {KEY_BYTES}"
            )
        keys[key_id] = key
    return CodecKeys(keys)


def generate_codec_key() -> str:
    """A fresh "id:base64key" entry: 8 random hex characters as id, 32 random bytes as key."""
    key_id = secrets.token_hex(4)
    key = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")
    return f"{key_id}:{key}"


class AesGcmCodec(PayloadCodec):
    """Encrypts each payload whole with the current key; decrypts with whichever key it names.

    Payloads without the `binary/encrypted` encoding pass through decode untouched, so histories
    written before encryption was turned on still read.
    """

    def __init__(self, keys: CodecKeys) -> None:
        self._keys = keys
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    @property
    def current_key_id(self) -> str:
        return self._keys.current_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self._keys.current_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_id is None:
            raise PayloadDecryptionError(
                f"encrypted payload carries no {KEY_ID_METADATA} metadata; it was not written "
                "by this codec"
            )
        key_id = raw_id.decode("utf-8", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(key_id)
        if len(payload.data) < NONCE_BYTES + TAG_BYTES:
            raise PayloadAuthenticationError(key_id)
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag:
            raise PayloadAuthenticationError(key_id) from None
        decrypted = Payload()
        try:
            decrypted.ParseFromString(plain)
        except Exception as err:  # protobuf raises its DecodeError; nothing else is expected
            raise PayloadDecryptionError(
                f"payload encrypted with key id {_shown(key_id)} decrypted to bytes that are "
                "not a Temporal payload"
            ) from err
        return decrypted


def _b64decode(text: str) -> bytes | None:
    """Standard or URL-safe base64, padding optional; None when it is neither."""
    normalized = text.replace("-", "+").replace("_", "/")
    normalized += "=" * (-len(normalized) % 4)
    try:
        return base64.b64decode(normalized, validate=True)
    except (binascii.Error, ValueError):
        return None


def _shown(key_id: str) -> str:
    return repr(key_id[:_SHOWN_ID_CHARS] + ("..." if len(key_id) > _SHOWN_ID_CHARS else ""))
