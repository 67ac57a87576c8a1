"""Bearer API keys on every route: 401 without a valid key, 403 without the route's scope."""

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from api.rate_limit import RateLimiter, too_many_requests
from domain.access import ApiKey, Scope
from store.api_keys import ApiKeyStore

# Documents the scheme in the OpenAPI document; errors are ours, so it does not raise by itself.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer crk_...`")

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


CACHE_SECONDS = 5.0
"""How long a verified key is taken on trust in a running service (no database read): a revoked
key keeps working for at most this long there."""

MAX_CACHED = 10_000
"""Verified keys remembered at most; beyond, the cache starts again (tokens are few in practice;
this only bounds memory if many distinct good tokens were presented)."""


class Authenticator:
    """Checks keys against the store, remembering good ones for `cache_seconds` (CACHE_SECONDS).

    The cache spares a database read per request; the price is that a revoked key keeps working
    for at most `cache_seconds` in a running service. Refusals are never cached, so a key made a
    moment ago works at once. Entries are keyed by the SHA-256 of the presented token: neither
    the token nor its secret is kept in memory, and a lookup compares digests of what the client
    sent, not stored secrets (the store's check, `secret_matches`, stays constant-time).
    """

    def __init__(
        self,
        keys: ApiKeyStore,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._keys = keys
        self._limiter = limiter
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, ApiKey]] = {}

    async def authenticate(self, token: str) -> ApiKey | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        key = await self._keys.verify(token)
        if key is None:
            self._cache.pop(digest, None)
        else:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (now, key)
        return key

    def require(self, scope: Scope) -> Callable[[Credentials], Awaitable[ApiKey]]:
        """A FastAPI dependency that admits only keys holding `scope`."""

        async def dependency(credentials: Credentials) -> ApiKey:
            if credentials is None:
                raise _unauthorized("this endpoint needs an API key: Authorization: Bearer <key>")
            key = await self.authenticate(credentials.credentials)
            if key is None:
                raise _unauthorized("the API key is not valid (unknown, revoked or malformed)")
            self.spend(key)
            if not key.allows(scope):
                raise ApiError(
                    403, "forbidden", f"the API key {key.id} lacks the scope {scope.value}"
                )
            return key

        return dependency

    def spend(self, key: ApiKey) -> None:
        """Take one request from `key`'s budget; 429 (ApiError) when it has none left."""
        wait = self._limiter.take(key.id) if self._limiter is not None else None
        if wait is not None:
            raise too_many_requests(wait, f"the API key {key.id}")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
