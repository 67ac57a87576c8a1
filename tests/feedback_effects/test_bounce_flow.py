"""The acceptance of bounces: a hard bounce for a sent email suppresses the address, and the
buyer's next step records EMAIL_NOT_SENT `bounced`, in every shop (a hard bounce is
platform-wide). A real flow on the time-skipping server with the real worker, store and SMTP
server; the bounce comes to the API's route as a relay posts it (the generic signed form)."""

import json
import time
from datetime import timedelta
from email.message import EmailMessage

from temporalio.testing import WorkflowEnvironment

from domain.activity import ActivityType, NotSentReason
from domain.policy import parse_policy
from domain.shops import ShopSettings
from domain.webhook_signing import new_secret, webhook_headers
from store.shops import ShopStore
from store.sql import SqlStore
from tests.feedback_effects.history import send_attempts
from tests.support import RunningStack, SmtpServer, eventually, sample_checkout
from tests.workflows.scenarios import entries, flow_result, has_entry

SECRET = new_secret()
TWO_EMAILS = parse_policy(
    {
        "name": "two-emails",
        "listen_window": "0s",
        "frequency_cap": {"window": "0s"},
        "steps": [
            {"delay": "1h", "action": "email", "template": "reminder"},
            {"delay": "1d", "action": "email", "template": "last_chance"},
        ],
    },
    "test",
)
SHOP_B = ShopSettings(
    shop_name="Bazaar B",
    mail_from="Bazaar B <news@bazaar-b.example.org>",
    message_id_domain="mail.bazaar-b.example.org",
)


def _message_id(smtp: SmtpServer, domain: str) -> str:
    [message] = [
        m
        for m in smtp.handler.messages
        if isinstance(m, EmailMessage) and str(m["Message-ID"]).endswith(f"@{domain}>")
    ]
    return str(message["Message-ID"])


async def test_a_bounce_stops_the_buyers_next_emails_in_every_shop(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    await ShopStore(store.engine).add("shop-b", "Shop B", SHOP_B)
    buyer = sample_checkout(checkoutId="co-bounce-1")
    async with RunningStack.running(
        env.client,
        store=store,
        smtp=smtp,
        policy=TWO_EMAILS,
        serve=True,
        feedback_signing_secret=SECRET,
    ) as stack:
        now = await env.get_current_time()
        ids = {}
        for shop in ("default", "shop-b"):
            checkout = buyer.model_copy(update={"created_date": now})
            ids[shop] = (await stack.service.report(checkout, TWO_EMAILS, shop_id=shop)).checkout_id
        # Step 1 of both goes out.
        await env.sleep(timedelta(hours=2))
        for checkout_id in ids.values():
            await eventually(has_entry(store, checkout_id, ActivityType.EMAIL_SENT), what="step 1")
        message_id = _message_id(smtp, "shop.test")

        # Hours later the relay reports the default shop's email as a hard bounce.
        body = json.dumps(
            {
                "events": [
                    {
                        "type": "hard_bounce",
                        "email": "Ada@Example.com",
                        "messageId": message_id,
                        "occurredAt": (now + timedelta(hours=3)).isoformat(),
                    }
                ]
            }
        ).encode()
        headers = webhook_headers(SECRET, "evt-bounce-1", int(time.time()), body)
        answer = await stack.http.post("/feedback/v1/generic", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"received": 1, "suppressed": 1}

        # The signal reaches both flows through the workers' hand-off before step 2 is due.
        async def delivered() -> bool:
            return not await store.commands.pending(checkout_ids=list(ids.values()))

        await eventually(delivered, what="the email_suppressed signals delivered")
        for checkout_id in ids.values():
            await flow_result(stack.service, env, checkout_id)
        # A checkout of the same buyer reported after the bounce, in a third shop: its first
        # step finds the suppression in the store (no flow of it was open to be told).
        later = buyer.model_copy(update={"created_date": await env.get_current_time()})
        third = (await stack.service.report(later, TWO_EMAILS, shop_id="shop-c")).checkout_id
        await env.sleep(timedelta(hours=2))
        await eventually(has_entry(store, third, ActivityType.EMAIL_NOT_SENT), what="step 1")
        third_entries = await entries(store, third)
        attempts = {shop: await send_attempts(env, c) for shop, c in ids.items()}

    for shop, checkout_id in ids.items():
        timeline = await entries(store, checkout_id)
        assert timeline[-2:] == [
            (ActivityType.EMAIL_SENT, None),
            (ActivityType.EMAIL_NOT_SENT, NotSentReason.BOUNCED),
        ], shop
        # Step 2 was refused by the flow itself, on the signal: no second email activity.
        assert attempts[shop] == 1, shop
    assert third_entries[-1] == (ActivityType.EMAIL_NOT_SENT, NotSentReason.BOUNCED)
    # The bounced email's entry says what the relay reported; the other shop's email did not
    # bounce.
    bounced = await store.get(ids["default"])
    other = await store.get(ids["shop-b"])
    assert bounced is not None and other is not None
    [sent] = [a for a in bounced.activities if a.type is ActivityType.EMAIL_SENT]
    assert sent.outcome == "bounced" and sent.outcome_date == now + timedelta(hours=3)
    assert [a.outcome for a in other.activities if a.type is ActivityType.EMAIL_SENT] == [None]
    assert len(smtp.handler.messages) == 2  # the two step-1 emails, nothing after the bounce
