"""API keys and their scopes: the key format, hashing and the scope rules. Pure: no I/O.

A key reads `crk_<id>_<secret>`. The id is public (listed, logged, used to revoke); the secret is
shown once, when the key is made, and the store keeps only its SHA-256. A random 256-bit secret
needs no slow password hash: nobody can guess it, so a fast hash is enough to make a stolen
database useless for calling the API.

A key belongs to one shop and acts for it alone; a platform key (no shop) acts for the shop a
request names (api.auth), and for `default` when it names none.
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.shops import DEFAULT_SHOP

KEY_PREFIX = "crk"
_KEY_SHAPE = re.compile(r"crk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


class Scope(StrEnum):
    READ = "abandoned-checkouts:read"
    """Read and query abandoned checkouts, their activities, and list subscriptions."""
    MANAGE = "abandoned-checkouts:manage"
    """Report, recover and delete checkouts, manage event subscriptions; includes READ."""


def parse_scopes(names: list[str] | str) -> frozenset[Scope]:
    """Scopes from their names (a list, or one space- or comma-separated string).

    Raises ValueError naming the unknown scope and the known ones.
    """
    items = names.replace(",", " ").split() if isinstance(names, str) else names
    if not items:
        raise ValueError("a key needs at least one scope")
    found: set[Scope] = set()
    for name in items:
        try:
            found.add(Scope(name.strip()))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise ValueError(f"unknown scope {name!r}; known scopes: {known}") from None
    return frozenset(found)


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: frozenset[Scope]
    created_date: datetime
    revoked_date: datetime | None = None
    shop_id: str | None = DEFAULT_SHOP
    """The shop the key acts for; None: a platform key."""

    @property
    def platform(self) -> bool:
        return self.shop_id is None

    def allows(self, needed: Scope) -> bool:
        if self.revoked_date is not None:
            return False
        return needed in self.scopes or Scope.MANAGE in self.scopes


@dataclass(frozen=True)
class NewKey:
    """A freshly made key: `token` is the only copy of the secret there will ever be."""

    id: str
    token: str
    secret_hash: str


def new_key() -> NewKey:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return NewKey(key_id, f"{KEY_PREFIX}_{key_id}_{secret}", hash_secret(secret))


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, or None for anything else."""
    match = _KEY_SHAPE.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    # Constant-time, so response timing reveals nothing about the stored hash.
    return hmac.compare_digest(hash_secret(secret), stored_hash)
