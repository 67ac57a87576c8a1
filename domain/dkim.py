"""A sender's DKIM identity (RFC 6376): the domain (d=), the selector (s=) and the RSA key that
sign a recovery email, for relays that do not sign. Pure rules, no I/O: which domains may sign
for a From address, what a usable key is, and the TXT record a shop publishes. The signing itself
is activities.dkim; keeping a shop's key sealed is store.shops.
"""

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import (
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from domain.base import CamelModel

SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
)
"""The header fields a signature covers, those of them a message has: what a receiver shows or
acts on (the unsubscribe button, the complaint loop's identifiers)."""

MIN_KEY_BITS = 1024
"""RFC 8301: verifiers refuse smaller RSA keys (2048 is what a new key should have)."""

KEEP_SEALED = {"keep_sealed_key": True}
"""The serialization context under which a DkimSetting keeps its sealed key: the store's only."""

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+", re.ASCII)
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)


class DkimError(ValueError):
    """A DKIM setting that cannot sign: the message says which part and why (never the key)."""


def check_domain(value: str) -> str:
    """The signing domain, lowercased; a domain of two labels at least (shop.example)."""
    if not _DOMAIN.fullmatch(value):
        raise DkimError(f"{value!r} is not a domain name such as 'shop.example'")
    return value.lower()


def check_selector(value: str) -> str:
    """The selector: DNS labels (`mail`, `recovery2026`), the name before `._domainkey.`."""
    if len(value) > 63 or not _SELECTOR.fullmatch(value):
        raise DkimError(f"{value!r} is not a selector (letters, digits and hyphens, as 'mail')")
    return value.lower()


def record_name(selector: str, domain: str) -> str:
    """Where receivers look the public key up (a TXT record)."""
    return f"{selector}._domainkey.{domain}"


def aligned(dkim_domain: str, from_domain: str) -> bool:
    """DMARC's relaxed alignment as far as it can be told without the public suffix list: d= is
    the From address's domain or a parent of it (mail.shop.example may sign as shop.example)."""
    signing, sender = dkim_domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return sender == signing or sender.endswith("." + signing)


def alignment_problem(dkim_domain: str, from_address: str) -> str | None:
    """Why `dkim_domain` may not sign mail from `from_address` (an address, a name optional);
    None when it may."""
    domain = from_address.rpartition("@")[2].rstrip(">").strip()
    if aligned(dkim_domain, domain):
        return None
    return (
        f"d={dkim_domain} is neither the From domain {domain} nor a parent of it, so the "
        "signature would not align for DMARC"
    )


@dataclass(frozen=True)
class DkimKey:
    """An RSA private key that may sign, with what may be shown of it."""

    pem: str = field(repr=False)
    """PKCS#1 PEM ("BEGIN RSA PRIVATE KEY"), the form dkimpy reads. A secret."""
    public_key: str
    """The p= value of the DNS record: base64 of the public key (SubjectPublicKeyInfo)."""
    fingerprint: str
    """"sha256:" and 16 hex characters of the public key: tells keys apart, reveals nothing."""
    bits: int

    @property
    def txt_record(self) -> str:
        return f"v=DKIM1; k=rsa; p={self.public_key}"


def read_private_key(text: str | bytes) -> DkimKey:
    """The key in a PEM text (PKCS#1 or PKCS#8, unencrypted); raises DkimError saying what is
    wrong with it, never quoting it."""
    data = text.encode() if isinstance(text, str) else text
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise DkimError("the private key is encrypted; give it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise DkimError("not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimError(f"a {type(key).__name__.removeprefix('_')} key; DKIM here signs with RSA")
    if key.key_size < MIN_KEY_BITS:
        raise DkimError(f"an RSA key of {key.key_size} bits; receivers need {MIN_KEY_BITS} or more")
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return DkimKey(
        pem=pem.decode("ascii"),
        public_key=base64.b64encode(public).decode("ascii"),
        fingerprint="sha256:" + hashlib.sha256(public).hexdigest()[:16],
        bits=key.key_size,
    )


class DkimSetting(CamelModel):
    """A shop's own DKIM identity, as its settings keep it: the key sealed (store.shops), so a
    database dump holds no key that signs. Every JSON form of it but the store's own (the
    KEEP_SEALED context) leaves the sealed key out: answers show domain, selector, fingerprint."""

    model_config = ConfigDict(frozen=True)

    domain: str
    selector: str
    fingerprint: str = Field(pattern=r"^sha256:[0-9a-f]{16}$")
    sealed_key: str = Field(repr=False, pattern=r"^sealed1\.")

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return check_domain(value)

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        return check_selector(value)

    @model_serializer(mode="wrap")
    def _without_key(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not (info.context or {}).get("keep_sealed_key"):
            data.pop("sealedKey", None)
            data.pop("sealed_key", None)
        return data

    @property
    def record_name(self) -> str:
        return record_name(self.selector, self.domain)
