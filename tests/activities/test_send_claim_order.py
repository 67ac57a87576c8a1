"""Where in the SMTP conversation the email step claims its send, against a relay that speaks SMTP
line by line (tests/smtp_wire.py) and each store.

The claim is the last thing before the relay accepts the message: everything but the final dot
has been sent. So a worker that dies before claiming has delivered nothing (the retry sends), and
one that dies holding a claim has all but certainly delivered (the retry must not send again).
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.rendering import TemplateRenderer
from activities.smtp_pool import SmtpPool
from domain.activity import ActivityType, NotSentReason
from domain.smtp import SmtpConfig
from store.sql import SendStart, SqlStore
from tests.activities.test_email_activity import NOW, SENDER, _reported, _request
from tests.smtp_wire import Transaction, WireRelay, wire_relay
from tests.support import sample_checkout

BUYER = "ada@example.com"


@dataclass
class ClaimMoment:
    """What the relay had when the step claimed its send."""

    receiving: list[bytes]
    accepted: int


class WatchedStore(SqlStore):
    """The real store, noting the relay's state at each claim; `before_claim` runs first."""

    relay: WireRelay
    moments: list[ClaimMoment]
    before_claim: str | None = None

    async def begin_send(
        self,
        checkout_id: str,
        key: str,
        message_id: str,
        at: datetime,
        cap_window: timedelta = timedelta(0),
    ) -> SendStart:
        await asyncio.sleep(0.05)  # the relay reads what the pool wrote
        self.moments.append(
            ClaimMoment([bytes(t.body) for t in self.relay.receiving], len(self.relay.accepted))
        )
        if self.before_claim == "buyer purchased":
            await self.mark_recovered(checkout_id, NOW, "order-1", signal_flow=False)
        return await super().begin_send(checkout_id, key, message_id, at, cap_window)


@pytest.fixture
async def relay() -> AsyncIterator[WireRelay]:
    async with wire_relay() as running:
        yield running


@pytest.fixture
async def watched(database_url: str, relay: WireRelay) -> AsyncIterator[WatchedStore]:
    store = WatchedStore.from_url(database_url)
    assert isinstance(store, WatchedStore)
    store.relay, store.moments = relay, []
    await store.create_schema()
    yield store
    await store.close()


@pytest.fixture
async def email(watched: WatchedStore, relay: WireRelay) -> AsyncIterator[EmailActivities]:
    pool = SmtpPool(SmtpConfig(host="127.0.0.1", port=relay.port, pool_size=1))
    yield EmailActivities(watched, pool, TemplateRenderer(), SENDER, "Test Shop")
    await pool.close()


async def _entries(store: SqlStore, checkout_id: str) -> list[tuple[ActivityType, str | None]]:
    record = await store.get(checkout_id)
    assert record is not None
    return [(a.type, a.reason) for a in record.activities]


async def test_the_send_is_claimed_when_the_relay_holds_all_but_the_end(
    email: EmailActivities, watched: WatchedStore, relay: WireRelay
) -> None:
    checkout_id = await _reported(watched)
    outcome = await ActivityEnvironment().run(email.send_recovery_email, _request(checkout_id))

    assert outcome.type is ActivityType.EMAIL_SENT
    [moment] = watched.moments
    assert moment.accepted == 0, "the relay had accepted the message before the claim"
    [body] = moment.receiving
    [delivered] = relay.to(BUYER)
    # At the claim the relay had every line of the message; only its end was missing.
    assert body == bytes(delivered.body)
    assert b"Subject:" in body


async def test_a_purchase_between_the_look_and_the_claim_delivers_nothing(
    email: EmailActivities, watched: WatchedStore, relay: WireRelay
) -> None:
    checkout_id = await _reported(watched)
    watched.before_claim = "buyer purchased"

    outcome = await ActivityEnvironment().run(email.send_recovery_email, _request(checkout_id))

    assert (outcome.type, outcome.reason) == (ActivityType.EMAIL_NOT_SENT, NotSentReason.RECOVERED)
    assert len(watched.moments) == 1  # the message had reached the relay, all but its end
    await asyncio.sleep(0.1)  # the relay sees the connection go
    assert relay.accepted == [] and relay.receiving == []
    # The abandoned connection is not reused: the next email goes out on a new one.
    watched.before_claim = None
    other = await _reported_as(watched, "c-2")
    again = await ActivityEnvironment().run(email.send_recovery_email, _request(other))
    assert again.type is ActivityType.EMAIL_SENT
    assert len(relay.accepted) == 1


async def test_an_end_left_unanswered_is_never_sent_twice(
    email: EmailActivities, watched: WatchedStore, relay: WireRelay
) -> None:
    async def hang_up(_: Transaction) -> bytes | None:
        return None

    relay.on_end = hang_up
    checkout_id = await _reported(watched)
    env = ActivityEnvironment()

    first = await env.run(email.send_recovery_email, _request(checkout_id))
    relay.on_end = _accept
    retried = await env.run(email.send_recovery_email, _request(checkout_id))

    unconfirmed = (ActivityType.EMAIL_NOT_SENT, NotSentReason.DELIVERY_UNCONFIRMED)
    assert (first.type, first.reason) == unconfirmed
    assert (retried.type, retried.reason) == unconfirmed
    assert len(relay.to(BUYER)) == 1  # the relay took it at the dot; the retry did not resend
    assert (await _entries(watched, checkout_id))[-1] == unconfirmed


async def test_a_refusal_of_the_end_gives_the_claim_back(
    email: EmailActivities, watched: WatchedStore, relay: WireRelay
) -> None:
    refusals = [b"451 4.3.0 try again later"]

    async def refuse_once(ended: Transaction) -> bytes | None:
        if refusals:
            relay.accepted.remove(ended)  # a relay that refuses has not queued it
            return refusals.pop()
        return await _accept(ended)

    relay.on_end = refuse_once
    checkout_id = await _reported(watched)
    env = ActivityEnvironment()

    with pytest.raises(Exception, match="451"):
        await env.run(email.send_recovery_email, _request(checkout_id))
    retried = await env.run(email.send_recovery_email, _request(checkout_id))

    assert retried.type is ActivityType.EMAIL_SENT
    assert len(relay.to(BUYER)) == 1


async def test_a_relay_gone_before_the_claim_leaves_nothing_claimed(
    email: EmailActivities, watched: WatchedStore, relay: WireRelay
) -> None:
    async def hang_up(_: Transaction) -> bytes | None:
        return None

    relay.on_data = hang_up
    checkout_id = await _reported(watched)
    env = ActivityEnvironment()

    with pytest.raises(Exception):  # noqa: B017 - whichever error the connection's end gives
        await env.run(email.send_recovery_email, _request(checkout_id))
    assert watched.moments == []  # never claimed
    relay.on_data = _go_ahead
    retried = await env.run(email.send_recovery_email, _request(checkout_id))

    assert retried.type is ActivityType.EMAIL_SENT
    assert len(relay.to(BUYER)) == 1


async def _accept(_: Transaction) -> bytes | None:
    return b"250 2.0.0 queued"


async def _go_ahead(_: Transaction) -> bytes | None:
    return b"354 go ahead"


async def _reported_as(store: SqlStore, checkout_id: str) -> str:
    checkout = sample_checkout().model_copy(
        update={"id": checkout_id, "created_date": NOW, "checkout_id": f"shop-{checkout_id}"}
    )
    await store.save_reported(checkout, NOW)
    return checkout_id
