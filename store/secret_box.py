"""Secrets the store must read back (subscribers' signing secrets), kept encrypted at rest.

A database dump or backup then holds no secret that forges a delivery. AES-256-GCM with the first
configured key; every key decrypts, so a key can rotate. The stored text reads
`sealed1.<fingerprint>.<base64url(nonce || ciphertext)>`: the fingerprint (8 hex characters of the
key's SHA-256) names the key without revealing it, and the row it belongs to is bound into the
ciphertext as associated data, so a sealed value copied into another row does not open there.
Values without the prefix are secrets stored before encryption, read as they are.
"""

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "sealed1."
NONCE_BYTES = 12
KEY_BYTES = 32


class SecretUnreadableError(Exception):
    """A sealed secret none of the configured keys opens. The message names no key material."""


def fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


class SecretBox:
    def __init__(self, keys: Mapping[str, bytes], setting: str) -> None:
        """`keys` in configured order (the first seals); `setting` names where they come from,
        for error messages."""
        if not keys:
            raise ValueError("at least one key is needed")
        for key in keys.values():
            if len(key) != KEY_BYTES:
                raise ValueError(f"a key of {setting} is {len(key)} bytes; AES-256 needs 32")
        self._keys = {fingerprint(key): key for key in keys.values()}
        self._current = fingerprint(next(iter(keys.values())))
        self._setting = setting

    def __repr__(self) -> str:
        return f"SecretBox(fingerprints={list(self._keys)!r})"

    def seal(self, secret: str, row_id: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._keys[self._current]).encrypt(
            nonce, secret.encode(), self._bound(self._current, row_id)
        )
        text = base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")
        return f"{PREFIX}{self._current}.{text}"

    def open(self, stored: str, row_id: str) -> str:
        """The secret `seal` made `stored` of, for the same row."""
        if not stored.startswith(PREFIX):
            return stored
        key_print, _, text = stored.removeprefix(PREFIX).partition(".")
        key = self._keys.get(key_print)
        if key is None:
            raise SecretUnreadableError(
                f"a stored secret was sealed with a key (fingerprint {key_print[:8]!r}) that is "
                f"not among {self._setting}; give every process the same keys"
            )
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            secret = AESGCM(key).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._bound(key_print, row_id)
            )
            return secret.decode()
        except (binascii.Error, ValueError, InvalidTag, UnicodeDecodeError):
            raise SecretUnreadableError(
                f"a stored secret (key fingerprint {key_print[:8]!r}) failed authentication: it "
                "was altered, or belongs to another row"
            ) from None

    @staticmethod
    def _bound(key_print: str, row_id: str) -> bytes:
        return f"stored-secret\0{key_print}\0{row_id}".encode()


def open_secret(stored: str, row_id: str, box: SecretBox | None) -> str:
    """The secret kept as `stored`: opened when sealed, as it is when stored before sealing."""
    if not stored.startswith(PREFIX):
        return stored
    if box is None:
        raise SecretUnreadableError("a stored secret is sealed, and this process has no key")
    return box.open(stored, row_id)


def derived_key(secret: str, purpose: str) -> bytes:
    """A 32-byte key for `purpose` from a generated text secret (the dev fallback's file)."""
    return hashlib.sha256(f"{purpose}\0{secret}".encode()).digest()
