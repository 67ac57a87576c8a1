"""Request budgets: a token bucket per API key, and one per client address on the public routes.

A bucket holds up to `burst` tokens and gains `rate` tokens a second; a request takes one, and a
request that finds less than one is answered 429 with `Retry-After` (whole seconds until a token
is back, at least 1) in the API's usual error body.

The buckets live in the memory of one process: N API replicas behind a load balancer give a
client N times the budget. Memory is bounded: a bucket left alone long enough to be full again is
no different from a new one, so it is dropped, and beyond `max_buckets` the least recently used
go first (a flood of distinct keys or addresses costs at most that many entries).
"""

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ApiError, error_response
from domain.links import UNSUBSCRIBE_PATH

MAX_BUCKETS = 100_000
"""Buckets kept at most per limiter; each is a few hundred bytes."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by name (an API key id, a client address), all with one rate and burst.

    `rate` tokens a second, `burst` at most (and at first). A `rate` of 0 turns limiting off.
    `clock` is monotonic seconds, injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        if rate < 0 or burst < 1 or max_buckets < 1:
            raise ValueError("a rate limiter needs rate >= 0, burst >= 1 and max_buckets >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._max_buckets = max_buckets
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        # A bucket untouched this long has refilled completely: dropping it changes nothing.
        self._idle_seconds = self._burst / rate if rate > 0 else 0.0

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, name: str) -> float | None:
        """Spend one token of `name`'s bucket: None when it had one, else the seconds until it
        will have one again (the request is refused and nothing is spent)."""
        if not self.enabled:
            return None
        now = self._clock()
        self._evict_idle(now)
        bucket = self._buckets.pop(name, None)
        if bucket is None:
            bucket = _Bucket(self._burst, now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
            bucket.updated = now
        self._buckets[name] = bucket  # the most recently used, last
        while len(self._buckets) > self._max_buckets:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._rate

    def _evict_idle(self, now: float) -> None:
        # Oldest first: stop at the first bucket that is still refilling.
        while self._buckets:
            name, bucket = next(iter(self._buckets.items()))
            if now - bucket.updated < self._idle_seconds:
                return
            del self._buckets[name]


def retry_after(seconds: float) -> str:
    """`Retry-After` in whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))


def too_many_requests(seconds: float, what: str) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"too many requests for {what}; retry after {retry_after(seconds)} s",
        headers={"Retry-After": retry_after(seconds)},
    )


class AddressRateLimit:
    """ASGI middleware: requests whose path `limited(path)` selects spend a token of their client
    address's bucket. For the signed public routes, which have no key to count against.

    The address is the ASGI client's: behind a reverse proxy, uvicorn takes it from
    `X-Forwarded-For` only when the proxy is in `FORWARDED_ALLOW_IPS`; otherwise every buyer
    shares the proxy's bucket.
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter, limited: Callable[[str], bool]) -> None:
        self._app = app
        self._limiter = limiter
        self._limited = limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._limited(scope.get("path", "")):
            client = scope.get("client")
            address = client[0] if client else "unknown"
            wait = self._limiter.take(address)
            if wait is not None:
                error = too_many_requests(wait, "this address")
                await error_response(error)(scope, receive, send)
                return
        await self._app(scope, receive, send)


@dataclass(frozen=True)
class RateLimits:
    """The budgets an app enforces; the defaults limit nothing (settings give the real ones)."""

    key_rate: float = 0.0
    """Requests a second per API key (0: unlimited)."""
    key_burst: int = 1
    address_rate: float = 0.0
    """Requests a second per client address on the signed public routes (0: unlimited)."""
    address_burst: int = 1


_CHECKOUTS = "/ecom/v1/abandoned-checkout/"
_REDIRECT = "/redirect-to-checkout"


_PROVIDER_SIGNED = ("/feedback/v1/", "/sms/v1/inbound")


def signed_link_path(path: str) -> bool:
    """The routes open without a key: the recovery redirect and unsubscribe (a signed link), and
    the relays' and the SMS provider's webhooks (their signature). Each checks a signature, which
    costs CPU to refuse, so a client address gets a budget there."""
    if path == UNSUBSCRIBE_PATH or path.startswith(_PROVIDER_SIGNED):
        return True
    if not (path.startswith(_CHECKOUTS) and path.endswith(_REDIRECT)):
        return False
    checkout_id = path[len(_CHECKOUTS) : -len(_REDIRECT)]
    return bool(checkout_id) and "/" not in checkout_id
