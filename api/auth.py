"""Bearer API keys on every route: 401 without a valid key, 403 without the route's scope.

The request's shop is decided here, and only here (`Authenticator.shop`): a shop's key acts for
its shop; a platform key for the shop named in the X-Checkout-Recovery-Shop header (logged), or
`default` without one; a shop key naming another shop is refused (403), a platform key naming a
shop the deployment does not serve is not found (404 shop_not_found). Routes get the shop from
this dependency and pass it to every store read, which puts it in the statement: a checkout of
another shop is then not found (404), so a key learns nothing of other shops' data.
"""

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from api.rate_limit import RateLimiter, too_many_requests
from domain.access import ApiKey, Scope
from domain.shops import DEFAULT_SHOP, check_shop_id
from store.api_keys import ApiKeyStore
from store.kept_reads import KeptReads
from store.shops import Shop, ShopStore

logger = logging.getLogger(__name__)

# Documents the scheme in the OpenAPI document; errors are ours, so it does not raise by itself.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer crk_...`")

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]

SHOP_HEADER = "X-Checkout-Recovery-Shop"
ShopHeader = Annotated[
    str | None,
    Header(
        alias=SHOP_HEADER,
        max_length=64,
        description="The shop a platform key acts for (default: `default`); a shop's own key "
        "may name only its shop.",
    ),
]


@dataclass(frozen=True)
class RequestShop:
    """Who calls, and the shop the request acts for: every store read of the request names it."""

    key: ApiKey
    shop_id: str


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
        shops: ShopStore | None = None,
    ) -> None:
        """`shops`: where a shop a platform key names is looked up (kept `cache_seconds`, so a
        request costs no read); None only for an app whose keys name no shop."""
        self._keys = keys
        self._shops = (
            None
            if shops is None
            # An unknown shop is not kept as unknown: one registered a moment ago is served.
            else KeptReads[str, Shop | None](
                shops.get, seconds=cache_seconds, keep_missing=False, clock=clock
            )
        )
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

    def shop(self, scope: Scope) -> Callable[[Credentials, ShopHeader], Awaitable[RequestShop]]:
        """`require(scope)`, and the shop the request acts for (see the module's docstring)."""
        key_of = self.require(scope)

        async def dependency(credentials: Credentials, named: ShopHeader = None) -> RequestShop:
            key = await key_of(credentials)
            shop_id = resolve_shop(key, named)
            if key.platform and shop_id != DEFAULT_SHOP:
                await self._require_shop(shop_id)
            return RequestShop(key, shop_id)

        return dependency

    async def _require_shop(self, shop_id: str) -> None:
        """404 when the deployment serves no shop `shop_id` (`default` is always served)."""
        if self._shops is None or await self._shops.get(shop_id) is not None:
            return
        # A platform key may list every shop: naming the checked slug tells it nothing new.
        raise ApiError(
            404,
            "shop_not_found",
            f"{SHOP_HEADER}: no shop with id {shop_id!r} (GET /ecom/v1/shops)",
        )

    def spend(self, key: ApiKey) -> None:
        """Take one request from `key`'s budget; 429 (ApiError) when it has none left."""
        wait = self._limiter.take(key.id) if self._limiter is not None else None
        if wait is not None:
            raise too_many_requests(wait, f"the API key {key.id}")


def resolve_shop(key: ApiKey, named: str | None) -> str:
    """The shop `key` acts for when the request names `named` (the header, None if absent)."""
    if key.shop_id is not None:
        if named is not None and named != key.shop_id:
            # Never echo the named shop: it is whatever the caller chose to send.
            raise ApiError(403, "forbidden", f"the API key {key.id} acts for its own shop only")
        return key.shop_id
    if named is None:
        return DEFAULT_SHOP
    try:
        shop_id = check_shop_id(named)
    except ValueError as err:
        raise ApiError(400, "invalid_request", f"{SHOP_HEADER}: {err}") from None
    # Acting for a shop with a platform key is on the record (ids only: no PII).
    logger.info("Platform key %s acts for shop %s", key.id, shop_id)
    return shop_id


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
