"""The API-key cache (api.auth.Authenticator), on each database: a verified key is taken on trust
for CACHE_SECONDS, so a revocation takes effect within that; refusals are never cached; the cache
holds digests, never the tokens."""

import hashlib

from api.auth import CACHE_SECONDS, Authenticator
from domain.access import ApiKey, Scope, split_token
from store.api_keys import ApiKeyStore
from store.sql import SqlStore


class CountingKeys(ApiKeyStore):
    def __init__(self, store: SqlStore) -> None:
        super().__init__(store.engine)
        self.reads = 0

    async def verify(self, token: str) -> ApiKey | None:
        self.reads += 1
        return await super().verify(token)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_ttl_is_a_few_seconds():
    assert 0 < CACHE_SECONDS <= 5


async def test_a_good_key_is_read_once_per_ttl(store: SqlStore):
    keys, clock = CountingKeys(store), Clock()
    made, token = await keys.create("shop", frozenset({Scope.READ}))
    auth = Authenticator(keys, cache_seconds=5, clock=clock)
    for _ in range(3):
        key = await auth.authenticate(token)
        assert key is not None and key.id == made.id
    assert keys.reads == 1
    clock.now += 4.9
    assert await auth.authenticate(token) is not None
    assert keys.reads == 1
    clock.now += 0.2  # past the TTL: read again
    assert await auth.authenticate(token) is not None
    assert keys.reads == 2


async def test_a_revoked_key_stops_working_within_the_ttl(store: SqlStore):
    keys, clock = CountingKeys(store), Clock()
    made, token = await keys.create("shop", frozenset({Scope.MANAGE}))
    auth = Authenticator(keys, cache_seconds=5, clock=clock)
    assert await auth.authenticate(token) is not None
    assert await keys.revoke(made.id)
    clock.now += 4
    assert await auth.authenticate(token) is not None  # still trusted: at most the TTL
    clock.now += 1
    assert await auth.authenticate(token) is None
    clock.now += 100
    assert await auth.authenticate(token) is None


async def test_refusals_are_not_cached(store: SqlStore):
    keys, clock = CountingKeys(store), Clock()
    made, token = await keys.create("shop", frozenset({Scope.READ}))
    auth = Authenticator(keys, cache_seconds=5, clock=clock)
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in (wrong, wrong, "nonsense", "nonsense"):
        assert await auth.authenticate(bad) is None
    assert keys.reads == 4
    # A wrong token for the same key id neither lets the right one in nor keeps it out.
    assert await auth.authenticate(token) is not None
    assert await auth.authenticate(wrong) is None
    assert keys.reads == 6
    assert made.id in token


async def test_the_cache_keeps_digests_not_tokens(store: SqlStore):
    keys = CountingKeys(store)
    _, token = await keys.create("shop", frozenset({Scope.READ}))
    auth = Authenticator(keys)
    assert await auth.authenticate(token) is not None
    parts = split_token(token)
    assert parts is not None
    secret = parts[1]
    held = repr(vars(auth))
    assert token not in held and secret not in held
    assert hashlib.sha256(token.encode()).hexdigest() in held
