"""The store side of SMS steps on SQLite and PostgreSQL: the claim, its re-checks, STOP."""

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.activity import ActivityEntry, ActivityType
from store.email_limits import address_key
from store.schema import email_sends, sent_log, suppressions
from store.sms_sends import SmsSends, SmsStops, phone_key
from store.sql import SendClaim, SqlStore
from tests.support import sample_checkout

NOW = datetime(2026, 4, 1, 12, tzinfo=UTC)
DAY = timedelta(hours=24)
PHONE = "+49 30 1234 5678"
NUMBER = "+493012345678"


async def _report(
    store: SqlStore, checkout_id: str, shop_id: str = "default", **overrides: Any
) -> None:
    values: dict[str, Any] = {"contactDetails": {"phone": PHONE}, "smsConsent": True}
    values.update(overrides)
    checkout = sample_checkout(**values).model_copy(update={"id": checkout_id, "created_date": NOW})
    await store.save_reported(checkout, NOW, shop_id=shop_id)


def _sent(step: int = 1) -> ActivityEntry:
    return ActivityEntry(
        type=ActivityType.NOTIFICATION_SENT, created_date=NOW, step=step, channel="sms"
    )


async def test_a_claim_is_confirmed_by_its_entry_and_one_without_is_in_doubt(
    store: SqlStore,
) -> None:
    sends = SmsSends(store)
    await _report(store, "c-1")
    assert (await sends.check("c-1", "k-1", NOW, DAY)).claim is SendClaim.UNCLAIMED
    assert (await sends.claim("c-1", "k-1", NOW, DAY)).claim is SendClaim.CLAIMED
    # Claimed, no entry: an attempt that died around the provider's call.
    assert (await sends.claim("c-1", "k-1", NOW, DAY)).claim is SendClaim.IN_DOUBT
    await store.record_activity("c-1", "k-1", _sent())
    assert (await sends.claim("c-1", "k-1", NOW, DAY)).claim is SendClaim.ALREADY_SENT
    # A released claim may be made again (a 5xx: the text did not go).
    assert (await sends.claim("c-1", "k-2", NOW, DAY)).claim is SendClaim.CLAIMED
    await sends.release("k-2")
    assert (await sends.check("c-1", "k-2", NOW, DAY)).claim is SendClaim.UNCLAIMED
    async with store.engine.connect() as conn:
        ids = (await conn.scalars(sent_log.select().with_only_columns(sent_log.c.message_id))).all()
    assert ids and all(i.startswith("sms-") and "49" not in i for i in ids)


async def test_no_claim_without_consent_or_number_or_once_recovered(store: SqlStore) -> None:
    sends = SmsSends(store)
    await _report(store, "no-consent", smsConsent=None)
    await _report(store, "no-phone", contactDetails={})
    await _report(store, "recovered")
    await store.mark_recovered("recovered", NOW, None)
    for checkout_id in ("no-consent", "no-phone", "recovered"):
        found = await sends.claim(checkout_id, f"{checkout_id}/k", NOW, DAY)
        assert found.claim is None and found.checkout is not None, checkout_id
    assert (await sends.claim("unknown", "u/k", NOW, DAY)).checkout is None
    async with store.engine.connect() as conn:
        assert (await conn.execute(sent_log.select())).all() == []


async def test_an_email_of_another_checkout_caps_the_text_and_a_text_caps_an_email(
    store: SqlStore,
) -> None:
    sends = SmsSends(store)
    await _report(store, "emailed")
    await _report(store, "texted")
    # The email step of "emailed" claimed its send an hour ago.
    email = await store.begin_send("emailed", "e/k", "<m@shop.test>", NOW - timedelta(hours=1), DAY)
    assert email.claim is SendClaim.CLAIMED
    capped = await sends.claim("texted", "t/k", NOW, DAY)
    assert capped.capped and capped.claim is None
    # Outside the window it goes, and counts for the buyer's email address.
    assert (await sends.claim("texted", "t/k", NOW + DAY, DAY)).claim is SendClaim.CLAIMED
    async with store.engine.connect() as conn:
        keys = (await conn.scalars(email_sends.select().with_only_columns(email_sends.c.key))).all()
        assert sorted(keys) == ["e/k", "t/k"]
        [row] = (await conn.execute(email_sends.select().where(email_sends.c.key == "t/k"))).all()
        assert row.address_key == address_key("ada@example.com")
    later = await store.check_send("emailed", "e/k2", NOW + DAY + timedelta(hours=1), DAY)
    assert later.capped_until == NOW + 2 * DAY


async def test_stop_suppresses_the_number_in_every_shop_until_start(store: SqlStore) -> None:
    sends, stops = SmsSends(store), SmsStops(store)
    await _report(store, "c-1")
    await _report(store, "c-2", shop_id="other-shop")
    assert await stops.stop(NUMBER, NOW) is True
    assert await stops.stop(NUMBER, NOW) is False  # one row, however often
    for checkout_id in ("c-1", "c-2"):
        found = await sends.claim(checkout_id, f"{checkout_id}/k", NOW, DAY)
        assert found.stopped and found.claim is None
    async with store.engine.connect() as conn:
        [row] = (await conn.execute(suppressions.select())).all()
    assert (row.address_key, row.shop_id, row.reason) == (phone_key(NUMBER), None, "sms_stop")
    assert row.address_key != address_key(NUMBER)  # never an email address's key
    # The buyer's email is not suppressed by it.
    assert (await store.check_send("c-1", "e/k", NOW)).suppressed is False
    assert await stops.start(NUMBER) is True
    assert await stops.start(NUMBER) is False
    assert (await sends.claim("c-1", "k-1", NOW, DAY)).claim is SendClaim.CLAIMED
