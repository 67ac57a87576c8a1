"""Shops in one deployment, the same checkoutId and the same buyer: each buyer's email comes from
its own shop, with that shop's policy, sender, name, Reply-To, Message-ID domain, link host, default
language and templates (domain.shops, activities.shop_composers), and an unsubscribe in one shop
leaves the others' emails alone. On the time-skipping server with the real worker (open_worker),
a real SMTP server and each store."""

from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from domain.activity import ActivityType, NotSentReason
from domain.policy import parse_policy
from domain.shops import ShopSettings
from service.reporting_policy import policy_for_reports
from store.engine_policy import EnginePolicyStore
from store.shops import ShopStore
from store.sql import SqlStore
from tests.support import SmtpServer, body_text, engine_settings, running_engine, sample_checkout
from tests.workflows.scenarios import entries, flow_result

SHOP_B_POLICY = """
name = "shop-b-last-chance"
listen_window = "0s"
[frequency_cap]
window = "0s"
[[steps]]
delay = "2h"
action = "email"
template = "last_chance"
"""
ONE_EMAIL = parse_policy(
    {
        "name": "one-email",
        "listen_window": "0s",
        "frequency_cap": {"window": "0s"},
        "steps": [{"delay": "1h", "action": "email", "template": "reminder"}],
    },
    "test",
)


async def test_each_shop_mails_its_buyer_as_itself(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, tmp_path: Path
) -> None:
    env = time_skipping_env
    wording = tmp_path / "shop-b-templates"
    subject = wording / "email" / "last_chance" / "de" / "subject.txt"
    subject.parent.mkdir(parents=True)
    subject.write_text("{{ shop_name }} hat Ihren Warenkorb aufgehoben\n")
    shops = ShopStore(store.engine)
    await shops.add(
        "shop-a",
        "Shop A",
        ShopSettings(
            shop_name="Atelier A",
            mail_from="Atelier A <hello@atelier-a.example.com>",
            reply_to="care@atelier-a.example.com",
            public_url="https://links.atelier-a.example.com",
        ),
    )
    await shops.add(
        "shop-b",
        "Shop B",
        ShopSettings(
            shop_name="Bazaar B",
            mail_from="Bazaar B <news@bazaar-b.example.org>",
            message_id_domain="mail.bazaar-b.example.org",
            default_language="de",
            templates_dir=str(wording),
            policy=SHOP_B_POLICY,
        ),
    )
    # Italian: no shipped template has it, so each shop's default language is used.
    same = sample_checkout(checkoutId="co-shared-1", buyerLanguage="it")
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        # The running engine's policy, as if its workers were configured with ONE_EMAIL.
        engine_policy = EnginePolicyStore(store.engine)
        await engine_policy.publish(ONE_EMAIL, "one-email")
        now = await env.get_current_time()
        reported = {}
        for shop in ("shop-a", "shop-b", "default"):
            checkout = same.model_copy(update={"created_date": now})
            # As the API and `start` choose it: shop B has a policy of its own.
            chosen = await policy_for_reports(
                engine_policy,
                override=None,
                configured=lambda: ONE_EMAIL,
                shops=shops,
                shop_id=shop,
            )
            outcome = await service.report(checkout, chosen.policy, now=now, shop_id=shop)
            assert outcome.new, shop
            reported[shop] = outcome.checkout_id
        assert len(set(reported.values())) == 3
        # The same buyer also had a checkout in shop C, and unsubscribed there: that is from
        # shop C's sender only, so A, B and the default shop still mail them.
        await shops.add("shop-c", "Shop C", ShopSettings(shop_name="Corner C"))
        c = await service.report(
            same.model_copy(update={"created_date": now}), ONE_EMAIL, now=now, shop_id="shop-c"
        )
        assert await service.unsubscribe(c.checkout_id) == [c.checkout_id]
        for checkout_id in [*reported.values(), c.checkout_id]:
            await flow_result(service, env, checkout_id)
        await env.sleep(timedelta(seconds=1))
        unsubscribed = await entries(store, c.checkout_id)

    got = {
        str(m["From"]): message_from_bytes(m.as_bytes(), policy=policy.default)
        for m in smtp.handler.messages
    }
    assert sorted(got) == [
        "Atelier A <hello@atelier-a.example.com>",
        "Bazaar B <news@bazaar-b.example.org>",
        "Test Shop <recovery@shop.test>",
    ]
    a, b, default = (got[k] for k in sorted(got))
    assert {str(m["To"]) for m in (a, b, default)} == {"Ada Lovelace <ada@example.com>"}

    assert "Atelier A" in str(a["Subject"]) and "left something" in str(a["Subject"])
    assert str(a["Reply-To"]) == "care@atelier-a.example.com"
    assert "https://links.atelier-a.example.com/" in body_text(a, "plain")
    assert str(a["Message-ID"]).endswith("@atelier-a.example.com>")

    # Shop B: its own policy (the last-chance email), German by default (no Italian
    # templates), its own subject file.
    assert str(b["Subject"]) == "Bazaar B hat Ihren Warenkorb aufgehoben"
    assert str(b["Message-ID"]).endswith("@mail.bazaar-b.example.org>")
    assert b["Reply-To"] is None

    assert unsubscribed[-1] == (ActivityType.EMAIL_NOT_SENT, NotSentReason.UNSUBSCRIBED)

    # The default shop sets nothing: the deployment's sender and wording, as before shops.
    assert "Test Shop" in str(default["Subject"])
    assert str(default["Message-ID"]).endswith("@shop.test>")
