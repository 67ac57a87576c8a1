"""Request budgets: per API key on the API, per client address on the signed public routes."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.rate_limit import RateLimiter, retry_after, signed_link_path
from domain.access import Scope
from store.api_keys import ApiKeyStore
from store.sql import SqlStore
from tests.api.stack import BASE, Stack, running_stack
from tests.support import SmtpServer

# The budgets are what is under test; one database is enough.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

QUERY = f"{BASE}/query"
UNSUBSCRIBE = f"{BASE}/unsubscribe"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_arithmetic_with_an_injected_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)

    # A new bucket is full: the burst passes at once, the next request waits half a second.
    assert [limiter.take("a") for _ in range(3)] == [None, None, None]
    assert limiter.take("a") == pytest.approx(0.5)
    # A refusal spends nothing: still half a second to go.
    assert limiter.take("a") == pytest.approx(0.5)

    clock.now += 0.25  # half a token back
    assert limiter.take("a") == pytest.approx(0.25)
    clock.now += 0.25  # one token back: one request, no more
    assert limiter.take("a") is None
    assert limiter.take("a") == pytest.approx(0.5)

    # Refill stops at the burst, however long the bucket rests.
    clock.now += 3600
    assert [limiter.take("a") for _ in range(3)] == [None, None, None]
    assert limiter.take("a") is not None

    # Another name has a bucket of its own.
    assert limiter.take("b") is None


def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one() -> None:
    assert retry_after(0.01) == "1"
    assert retry_after(1.0) == "1"
    assert retry_after(1.2) == "2"
    assert retry_after(59.5) == "60"


def test_idle_buckets_are_dropped_and_their_number_is_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock, max_buckets=3)
    for name in ("a", "b", "c", "d"):
        limiter.take(name)
    # Beyond max_buckets the least recently used goes: "a" starts again with a full bucket.
    assert len(limiter) == 3
    limiter.take("a")
    assert limiter.take("a") is None  # a fresh bucket: a second request passes

    # Untouched for burst / rate seconds, a bucket is full again and is dropped.
    clock.now += 2.0
    limiter.take("e")
    assert len(limiter) == 1


def test_a_zero_rate_limits_nothing() -> None:
    limiter = RateLimiter(rate=0.0, burst=1)
    assert all(limiter.take("a") is None for _ in range(1000))
    assert len(limiter) == 0


def test_the_public_routes_are_the_signed_link_ones() -> None:
    assert signed_link_path(f"{BASE}/abc/redirect-to-checkout")
    assert signed_link_path(UNSUBSCRIBE)
    assert not signed_link_path(f"{BASE}/abc")
    assert not signed_link_path(f"{BASE}//redirect-to-checkout")
    assert not signed_link_path(f"{BASE}/a/b/redirect-to-checkout")
    assert not signed_link_path(QUERY)
    # The provider-signed webhooks take no key either.
    assert signed_link_path("/feedback/v1/ses")
    assert signed_link_path("/sms/v1/inbound")
    assert not signed_link_path("/feedback")


@pytest.fixture
async def stack(
    dev_server_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    async with running_stack(
        dev_server_env.client,
        store,
        smtp,
        tmp_path,
        api_rate_per_second=1.0,
        api_burst=3,
        public_rate_per_second=1.0,
        public_burst=2,
    ) as running:
        yield running


def _assert_limited(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.json()["code"] == "rate_limited"
    assert set(answer.json()) == {"code", "message"}
    seconds = answer.headers["Retry-After"]
    assert seconds.isdigit() and int(seconds) >= 1


async def _query(stack: Stack, key: str) -> httpx.Response:
    return await stack.http.post(
        QUERY, json={"query": {}}, headers={"Authorization": f"Bearer {key}"}
    )


@sqlite_only
async def test_a_key_over_its_budget_gets_429_with_retry_after_then_refills(stack: Stack) -> None:
    answers = [await _query(stack, stack.read_key) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]

    limited = await _query(stack, stack.read_key)
    _assert_limited(limited)
    assert limited.headers["Retry-After"] == "1"
    # Every route a key reaches spends the same budget, the codec's too.
    _assert_limited(
        await stack.http.post("/codec/decode", json={"payloads": []}, headers=stack.as_reader())
    )

    await asyncio.sleep(float(limited.headers["Retry-After"]) + 0.1)
    assert (await _query(stack, stack.read_key)).status_code == 200
    _assert_limited(await _query(stack, stack.read_key))


@sqlite_only
async def test_one_keys_exhaustion_leaves_another_keys_budget_alone(stack: Stack) -> None:
    _, other_key = await ApiKeyStore(stack.store.engine).create(
        "another reader", frozenset({Scope.READ})
    )
    for _ in range(3):
        await _query(stack, stack.read_key)
    _assert_limited(await _query(stack, stack.read_key))

    answers = [await _query(stack, other_key) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    # A request without a key is refused as before, not counted against anyone.
    assert (await stack.http.post(QUERY, json={"query": {}})).status_code == 401


@sqlite_only
async def test_the_signed_public_routes_are_limited_per_client_address(stack: Stack) -> None:
    # Forged tokens still spend the budget: that is what a guesser sends.
    redirect = f"{BASE}/some-checkout/redirect-to-checkout?token=forged"
    assert (await stack.http.get(redirect)).status_code == 403
    assert (await stack.http.get(UNSUBSCRIBE, params={"token": "forged"})).status_code == 400
    _assert_limited(await stack.http.get(redirect))
    _assert_limited(await stack.http.post(UNSUBSCRIBE, params={"token": "forged"}))

    # The key-authenticated API is not on this budget.
    assert (await _query(stack, stack.read_key)).status_code == 200

    # Another client address (a second loopback address) has a budget of its own.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=stack.base_url, transport=transport) as elsewhere:
        assert (await elsewhere.get(redirect)).status_code == 403
        assert (await elsewhere.get(redirect)).status_code == 403
        _assert_limited(await elsewhere.get(redirect))
