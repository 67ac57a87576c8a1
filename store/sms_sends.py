"""The store side of SMS steps: the claim of a text in the sent log, and the numbers that said STOP.

A text is claimed as an email is (store.sql's sent log: one row per step key, confirmed by the
step's entry), re-checked in the claim's transaction: the checkout still abandoned, the number
not suppressed, the frequency cap free. The cap is across channels: a claimed text is recorded in
`email_sends` under the buyer's email address key, so an email and a text of two checkouts of one
buyer within the window cap each other.

A number is known by a SHA-256 of "sms:" + its E.164 form, so it never collides with an email
address's key and the suppression list keeps no phone number.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.activity import ActivityType, NotSentReason
from domain.checkout import AbandonedCheckout
from domain.shops import DEFAULT_SHOP
from domain.sms import e164, sms_refusal
from store.email_limits import address_key, address_state, lock_address, record_send
from store.rows import checkout_from_row
from store.schema import checkouts, suppressions
from store.sql import SendClaim, SqlStore

SMS_STOP = str(NotSentReason.SMS_STOP)
"""The suppression's reason for a number that replied STOP."""


def phone_key(number: str) -> str:
    """The suppression key of an E.164 number."""
    return hashlib.sha256(f"sms:{number}".encode()).hexdigest()


def sms_message_id(step_key: str) -> str:
    """The sent log's id of a step's text: stable per step key, and no Message-ID of ours (an
    email bounce that names it finds no email)."""
    return f"sms-{hashlib.sha256(step_key.encode()).hexdigest()[:40]}"


@dataclass(frozen=True)
class SmsStart:
    """What a look at (or a claim of) a step's text found."""

    checkout: AbandonedCheckout | None
    claim: SendClaim | None
    """None when the checkout is missing or halted, or one of the fields below says why not."""
    stopped: bool = False
    """The number replied STOP."""
    capped: bool = False
    """Another checkout's email or text reached the buyer within the frequency cap window."""
    shop_id: str = DEFAULT_SHOP


class SmsSends:
    """The sent log's SMS side, over the store's database."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def check(
        self, checkout_id: str, key: str, at: datetime, cap_window: timedelta
    ) -> SmsStart:
        """What `claim` would find now, claiming nothing."""
        async with self._store.engine.connect() as conn:
            return await self._state(conn, checkout_id, key, at, cap_window, claim=None)

    async def claim(
        self, checkout_id: str, key: str, at: datetime, cap_window: timedelta
    ) -> SmsStart:
        """Re-read the checkout and, if it may still be texted, claim the text of `key`."""

        async def write(conn: AsyncConnection) -> SmsStart:
            message_id = sms_message_id(key)
            return await self._state(conn, checkout_id, key, at, cap_window, claim=message_id)

        return await self._store.run_write(write)

    async def release(self, key: str) -> None:
        """Give a claim back after a text that certainly did not go (the cap's record too)."""
        await self._store.release_send(key)

    async def _state(
        self,
        conn: AsyncConnection,
        checkout_id: str,
        key: str,
        at: datetime,
        cap_window: timedelta,
        *,
        claim: str | None,
    ) -> SmsStart:
        """The one rule for whether a step's text may go: with `claim` (its sent-log id), the
        text is claimed when it may; without, it is only looked at."""
        refused = await self._refusal(conn, checkout_id, at, cap_window, locking=claim is not None)
        if isinstance(refused, SmsStart):
            return refused
        checkout, shop_id, email_key = refused
        found = await self._store.step_claim(
            conn, checkout_id, key, at, claim=claim, confirmed_by=ActivityType.NOTIFICATION_SENT
        )
        if found is SendClaim.CLAIMED and email_key is not None:
            await record_send(conn, key, email_key, checkout_id, at, shop_id=shop_id)
        return SmsStart(checkout, found, shop_id=shop_id)

    async def _refusal(
        self,
        conn: AsyncConnection,
        checkout_id: str,
        at: datetime,
        cap_window: timedelta,
        *,
        locking: bool,
    ) -> SmsStart | tuple[AbandonedCheckout, str, str | None]:
        """The answer when the text may not go; else the checkout, its shop and the buyer's
        email address key (None: no email, so no cap to count in)."""
        row = (
            await conn.execute(
                select(checkouts).where(
                    checkouts.c.id == checkout_id, checkouts.c.deleted_date.is_(None)
                )
            )
        ).first()
        if row is None:
            return SmsStart(None, None)
        checkout, shop_id = checkout_from_row(row, []), str(row.shop_id)
        number = e164(checkout.contact_details.phone or "")
        # Consent and number as the flow decided them, on the newest snapshot.
        if checkout.halted() is not None or number is None or sms_refusal(checkout) is not None:
            return SmsStart(checkout, None, shop_id=shop_id)
        email = checkout.buyer_info.email
        email_key = address_key(email) if email else None
        if locking and email_key is not None:
            # The lock an email's claim takes too: an email and a text of two checkouts of one
            # buyer cannot both find the cap free.
            await lock_address(conn, email_key)
        # A STOP holds in every shop (shop NULL): we text from one number.
        number_state = await address_state(
            conn, phone_key(number), checkout_id, at, timedelta(0), shop_id=shop_id
        )
        if number_state.suppressed_because is not None:
            return SmsStart(checkout, None, stopped=True, shop_id=shop_id)
        if email_key is not None:
            cap = await address_state(conn, email_key, checkout_id, at, cap_window, shop_id=shop_id)
            if cap.capped_until is not None:
                return SmsStart(checkout, None, capped=True, shop_id=shop_id)
        return checkout, shop_id, email_key


class SmsStops:
    """The numbers that replied STOP: suppressed in every shop until they reply START."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def stop(self, number: str, at: datetime) -> bool:
        """Suppress the E.164 `number` in every shop (a STOP is the number's, not one shop
        sender's: we text from one number); False when it already was."""
        key = phone_key(number)

        async def write(conn: AsyncConnection) -> bool:
            await lock_address(conn, key)
            return await self._store.suppress(conn, key, at, shop_id=None, reason=SMS_STOP)

        return await self._store.run_write(write)

    async def start(self, number: str) -> bool:
        """Lift the STOP of `number`; False when there was none."""
        lifted = delete(suppressions).where(
            suppressions.c.address_key == phone_key(number), suppressions.c.reason == SMS_STOP
        )

        async def write(conn: AsyncConnection) -> bool:
            return bool((await conn.execute(lifted)).rowcount)

        return await self._store.run_write(write)

    async def is_stopped(self, number: str) -> bool:
        async with self._store.engine.connect() as conn:
            return await self._stopped(conn, phone_key(number))

    @staticmethod
    async def _stopped(conn: AsyncConnection, key: str) -> bool:
        found = await conn.scalar(
            select(suppressions.c.seq).where(suppressions.c.address_key == key).limit(1)
        )
        return found is not None
