"""DKIM signing and the Feedback-ID of a recovery email: the real email activity, a real relay on
loopback, then `dkim.verify` over the bytes the relay received, with the test key's TXT record as
the DNS answer. On each database the store supports (a shop's key is stored sealed)."""

import re
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path

import dkim  # type: ignore[import-untyped]  # dkimpy ships no type hints
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.dkim import DkimSigner
from activities.email import EmailActivities
from activities.email_compose import EmailComposer
from activities.email_message import Sender
from activities.email_preview import EmailPreviews, SampleCoupons
from activities.rendering import TemplateRenderer
from activities.smtp_pool import SmtpPool
from domain.activity import ActivityType
from domain.dkim import read_private_key
from domain.flow import step_key, workflow_id_for
from domain.policy import EmailStep, RecoveryPolicy
from domain.shops import DEFAULT_SHOP, ShopSettings
from domain.smtp import SmtpConfig
from domain.steps import EmailStepRequest
from store.schema import shops as shops_table
from store.shops import ShopStore, seal_dkim
from store.sql import SqlStore
from tests.deliverability.conftest import RawRelay, dns_with, new_key_pem
from tests.support import engine_settings, sample_checkout
from workers.link_secret import webhook_secret_box
from workers.worker import deployment_dkim, shop_composers_for

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
FROM = "Test Shop <recovery@shop.test>"


async def _reported(store: SqlStore, checkout_id: str, shop_id: str = DEFAULT_SHOP) -> str:
    checkout = sample_checkout().model_copy(update={"id": checkout_id, "created_date": NOW})
    await store.save_reported(checkout, NOW, shop_id=shop_id)
    return checkout_id


def _request(checkout_id: str, step_index: int = 1) -> EmailStepRequest:
    workflow_id = workflow_id_for(checkout_id)
    return EmailStepRequest(
        checkout_id=checkout_id,
        workflow_id=workflow_id,
        step_index=step_index,
        key=step_key(workflow_id, step_index),
        at=NOW,
        step=EmailStep(action="email", template="reminder", delay="1h"),
    )


def _pool(relay: RawRelay) -> SmtpPool:
    return SmtpPool(SmtpConfig(host="127.0.0.1", port=relay.port, pool_size=1))


def _tags(raw: bytes) -> dict[str, str]:
    header = message_from_bytes(raw)["DKIM-Signature"]
    assert header is not None
    value = re.sub(r"\s+", "", str(header))
    return dict(tag.split("=", 1) for tag in value.split(";") if tag)


async def test_the_deployments_signature_verifies_and_a_changed_body_does_not(
    store: SqlStore, relay: RawRelay, deployment_pem: bytes
) -> None:
    signer = DkimSigner("shop.test", "mail", read_private_key(deployment_pem))
    pool = _pool(relay)
    email = EmailActivities(store, pool, TemplateRenderer(), Sender(FROM, dkim=signer), "Test Shop")
    checkout_id = await _reported(store, "c-signed")
    try:
        entry = await ActivityEnvironment().run(email.send_recovery_email, _request(checkout_id))
    finally:
        await pool.close()

    assert entry.type == ActivityType.EMAIL_SENT
    (raw,) = relay.received
    dns = dns_with("mail", "shop.test", deployment_pem)
    assert dkim.verify(raw, dnsfunc=dns)
    tags = _tags(raw)
    assert (tags["d"], tags["s"], tags["a"], tags["c"]) == (
        "shop.test",
        "mail",
        "rsa-sha256",
        "relaxed/relaxed",
    )
    assert tags["h"].split(":") == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "feedback-id",
    ]
    # One byte of the body changed after signing: the signature no longer holds.
    head, _, body = raw.partition(b"\r\n\r\n")
    tampered = head + b"\r\n\r\n" + body.replace(b"A", b"B", 1)
    assert tampered != raw
    assert not dkim.verify(tampered, dnsfunc=dns)
    # Nor does it with another key published under the selector.
    assert not dkim.verify(raw, dnsfunc=dns_with("mail", "shop.test", new_key_pem()))


async def test_the_feedback_id_names_step_template_and_shop_and_nothing_of_the_buyer(
    store: SqlStore, relay: RawRelay
) -> None:
    pool = _pool(relay)
    email = EmailActivities(store, pool, TemplateRenderer(), Sender(FROM), "Test Shop")
    checkout_id = await _reported(store, "c-feedback", shop_id=DEFAULT_SHOP)
    try:
        await ActivityEnvironment().run(email.send_recovery_email, _request(checkout_id, 2))
    finally:
        await pool.close()

    (raw,) = relay.received
    message = message_from_bytes(raw)
    assert message["Feedback-ID"] == "step-3:reminder:default:checkout-recovery"
    buyer = sample_checkout()
    assert buyer.buyer_info.email is not None and buyer.contact_details is not None
    pii = [buyer.buyer_info.email, buyer.contact_details.first_name, checkout_id]
    assert not [value for value in pii if value and value in message["Feedback-ID"]]
    # No DKIM configured: no signature (the relay may sign).
    assert message["DKIM-Signature"] is None


async def test_a_shop_with_its_own_key_signs_with_its_own_domain_and_selector(
    store: SqlStore, relay: RawRelay, deployment_pem: bytes, shop_pem: bytes, tmp_path: Path
) -> None:
    key_file = tmp_path / "deployment.pem"
    key_file.write_bytes(deployment_pem)
    settings = engine_settings(
        relay.port,
        data_dir=tmp_path,
        dkim_domain="shop.test",
        dkim_selector="mail",
        dkim_private_key_file=key_file,
    )
    box = webhook_secret_box(settings)
    own = seal_dkim(box, "Bazaar.Example", "s2026", read_private_key(shop_pem))
    shops = ShopStore(store.engine)
    await shops.add(
        "bazaar",
        "Bazaar",
        ShopSettings(mail_from="Bazaar <news@mail.bazaar.example>", dkim=own),
    )
    # A shop of the deployment's own domain, with nothing of its own for DKIM.
    await shops.add("sister", "Sister", ShopSettings(shop_name="Sister shop"))
    # Another sender domain without a key: the deployment's d= would not align, so none.
    await shops.add("loner", "Loner", ShopSettings(mail_from="Loner <hi@loner.example>"))
    async with store.engine.connect() as conn:
        query = select(shops_table.c.settings).where(shops_table.c.id == "bazaar")
        row = (await conn.execute(query)).one()
    # Sealed at rest: a dump of the table holds no key that signs.
    assert "PRIVATE KEY" not in row.settings and "sealed1." in row.settings

    pool = _pool(relay)
    email = EmailActivities(
        store,
        pool,
        TemplateRenderer(),
        Sender(settings.mail_from, dkim=deployment_dkim(settings)),
        "Test Shop",
        composers=shop_composers_for(settings, store, SampleCoupons()),
    )
    env = ActivityEnvironment()
    try:
        for shop in ("bazaar", "sister", "loner"):
            await env.run(email.send_recovery_email, _request(await _reported(store, shop, shop)))
    finally:
        await pool.close()

    bazaar, sister, loner = relay.received
    assert (_tags(bazaar)["d"], _tags(bazaar)["s"]) == ("bazaar.example", "s2026")
    assert dkim.verify(bazaar, dnsfunc=dns_with("s2026", "bazaar.example", shop_pem))
    assert not dkim.verify(bazaar, dnsfunc=dns_with("s2026", "bazaar.example", deployment_pem))
    assert message_from_bytes(bazaar)["Feedback-ID"] == "step-2:reminder:bazaar:checkout-recovery"
    assert (_tags(sister)["d"], _tags(sister)["s"]) == ("shop.test", "mail")
    assert dkim.verify(sister, dnsfunc=dns_with("mail", "shop.test", deployment_pem))
    assert message_from_bytes(loner)["DKIM-Signature"] is None


async def test_the_test_send_carries_the_same_headers_signed(
    store: SqlStore, relay: RawRelay, deployment_pem: bytes
) -> None:
    signer = DkimSigner("shop.test", "mail", read_private_key(deployment_pem))
    policy = RecoveryPolicy(
        name="one", steps=[EmailStep(action="email", template="reminder", delay="1h")]
    )

    async def policy_of(shop_id: str) -> RecoveryPolicy:
        return policy

    previews = EmailPreviews(
        EmailComposer(TemplateRenderer(), Sender(FROM, dkim=signer), "Test Shop"),
        store,
        policy_of,
        SmtpConfig(host="127.0.0.1", port=relay.port),
        clock=lambda: NOW,
    )
    await previews.send_test(1, "en", None, "operator@example.com", shop_id=DEFAULT_SHOP)

    (raw,) = relay.received
    assert message_from_bytes(raw)["Feedback-ID"] == "step-1:reminder:default:checkout-recovery"
    assert dkim.verify(raw, dnsfunc=dns_with("mail", "shop.test", deployment_pem))
