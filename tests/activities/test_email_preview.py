"""Previews and test sends of a step's email (activities.email_preview) against real SMTP, on
both databases: the preview is what the step sends, its coupon is a sample nobody issued, and a
test goes to the operator only and is recorded nowhere."""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.email_compose import EmailComposer
from activities.email_message import Sender, message_id_for
from activities.email_preview import EmailPreviews, PreviewStep, SampleCoupons
from activities.rendering import TemplateRenderer
from activities.smtp_pool import SmtpPool
from activities.template_check import sample_coupon
from domain.activity import ActivityType
from domain.errors import InvalidInputError
from domain.flow import step_key, workflow_id_for
from domain.links import LinkSigner
from domain.policy import Coupon, EmailStep, RecoveryPolicy, parse_policy
from domain.schedule import buyer_zone
from domain.sent_email import read_email
from domain.shops import DEFAULT_SHOP, ShopSettings
from domain.smtp import SmtpConfig
from domain.steps import EmailStepRequest
from store import schema
from store.coupons import StoreCouponProvider
from store.shops import ShopStore
from store.sql import SqlStore
from tests.ports import free_port
from tests.support import RecordingSmtpHandler, engine_settings, sample_checkout
from workers.worker import shop_composers_for

SENDER = Sender("Test Shop <recovery@shop.test>")
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
BUYER = "ada@example.com"
OPERATOR = "ops@example.com"
COUPON = Coupon(percent_off=10, prefix="COMEBACK")

POLICY = parse_policy(
    {
        "name": "preview-test",
        "time_zone": "Europe/Berlin",
        "steps": [
            {"delay": "1h", "action": "email", "template": "reminder"},
            {"delay": "2h", "action": "task", "assignee": "sales", "template": "follow_up"},
            {
                "delay": "24h",
                "action": "email",
                "template": "last_chance",
                "coupon": {"percent_off": 10, "prefix": "COMEBACK"},
            },
        ],
    },
    "test",
)


@dataclass
class EnvelopeHandler(RecordingSmtpHandler):
    """Keeps each message's envelope recipients too."""

    recipients: list[list[str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.recipients.append(list(envelope.rcpt_tos))
        return await super().handle_DATA(server, session, envelope)


@dataclass(frozen=True)
class Relay:
    handler: EnvelopeHandler
    config: SmtpConfig


@pytest.fixture
def relay() -> Iterator[Relay]:
    handler = EnvelopeHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield Relay(handler, SmtpConfig(host="127.0.0.1", port=port, pool_size=1))
    controller.stop()


@dataclass(frozen=True)
class Parts:
    email: EmailActivities
    previews: EmailPreviews
    store: SqlStore


@pytest.fixture
async def parts(store: SqlStore, relay: Relay) -> AsyncIterator[Parts]:
    pool = SmtpPool(relay.config)
    links = LinkSigner("test-link-signing-secret", "https://recovery.shop.test", timedelta(days=7))
    email = EmailActivities(
        store,
        pool,
        TemplateRenderer(),
        SENDER,
        "Test Shop",
        links=links,
        coupons=StoreCouponProvider(store.engine),
    )

    async def policy(shop_id: str) -> RecoveryPolicy:
        return POLICY

    # The step's own composer, as workers/api_server.py hands the dashboard one wired alike.
    previews = EmailPreviews(email.composer, store, policy, relay.config, clock=lambda: NOW)
    yield Parts(email, previews, store)
    await pool.close()


async def _reported(store: SqlStore, **overrides: Any) -> str:
    checkout = sample_checkout(buyerTimeZone="Europe/Vienna", **overrides).model_copy(
        update={"id": "c-1", "created_date": NOW}
    )
    await store.save_reported(checkout, NOW)
    return "c-1"


def _request(checkout_id: str, step_index: int) -> EmailStepRequest:
    """What the flow asks of the step (workflows/abandoned_checkout.py `_email_step`)."""
    workflow_id = workflow_id_for(checkout_id)
    step = POLICY.steps[step_index]
    assert isinstance(step, EmailStep)
    checkout = sample_checkout(buyerTimeZone="Europe/Vienna")
    return EmailStepRequest(
        checkout_id=checkout_id,
        workflow_id=workflow_id,
        step_index=step_index,
        key=step_key(workflow_id, step_index),
        at=NOW,
        step=step,
        frequency_cap=POLICY.frequency_cap,
        time_zone=buyer_zone(checkout, POLICY).key,
    )


async def _counts(store: SqlStore) -> dict[str, int]:
    tables = (
        schema.activities,
        schema.sent_log,
        schema.email_sends,
        schema.sent_emails,
        schema.coupons,
    )
    async with store.engine.connect() as conn:
        return {
            table.name: (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            for table in tables
        }


async def test_the_preview_is_what_the_step_sends(parts: Parts, relay: Relay) -> None:
    checkout_id = await _reported(parts.store)
    preview = await parts.previews.preview(1, "", checkout_id, shop_id=DEFAULT_SHOP)

    await ActivityEnvironment().run(parts.email.send_recovery_email, _request(checkout_id, 0))
    (received,) = relay.handler.messages
    sent = read_email(received)
    assert preview.subject == sent.subject == "Ada, you left something in your cart at Test Shop"
    assert preview.text == sent.text and preview.html == sent.html
    assert (preview.sender, preview.to, preview.date) == (sent.sender, sent.to, sent.date)
    # The signed recovery and unsubscribe links as the step signs them.
    assert sent.text is not None and "https://recovery.shop.test/" in sent.text


async def test_a_chosen_language_is_forced_and_the_sample_stands_in_for_no_checkout(
    parts: Parts,
) -> None:
    checkout_id = await _reported(parts.store)
    german = await parts.previews.preview(1, "de", checkout_id, shop_id=DEFAULT_SHOP)
    assert german.subject == "Ada, Sie haben etwas in Ihrem Warenkorb bei Test Shop vergessen"
    sample = await parts.previews.preview(1, "fr", None, shop_id=DEFAULT_SHOP)
    assert "Test Shop" in sample.subject and sample.to.endswith("<buyer@example.com>")
    assert await parts.previews.steps(shop_id=DEFAULT_SHOP) == [
        _step(1, "reminder"),
        _step(3, "last_chance"),
    ]
    for step, language in ((2, "en"), (4, "en"), (1, "xx")):
        with pytest.raises(InvalidInputError):
            await parts.previews.preview(step, language, checkout_id, shop_id=DEFAULT_SHOP)
    with pytest.raises(InvalidInputError, match="no checkout"):
        await parts.previews.preview(1, "en", "c-unknown", shop_id=DEFAULT_SHOP)


def _step(number: int, template: str) -> PreviewStep:
    return PreviewStep(number, template, ("de", "en", "es", "fr"))


async def test_the_preview_shows_a_sample_coupon_and_stores_none(parts: Parts) -> None:
    checkout_id = await _reported(parts.store)
    before = await _counts(parts.store)
    preview = await parts.previews.preview(3, "en", checkout_id, shop_id=DEFAULT_SHOP)

    code = sample_coupon(COUPON, "EUR", NOW).code
    assert code == "COMEBACK-7KQ2M-XR9PT"
    assert preview.text is not None and code in preview.text
    assert preview.html is not None and code in preview.html
    assert await _counts(parts.store) == before
    assert before["coupons"] == 0


async def test_a_test_goes_to_the_operator_only_and_is_recorded_nowhere(
    parts: Parts, relay: Relay
) -> None:
    checkout_id = await _reported(parts.store)
    before = await _counts(parts.store)

    sent = await parts.previews.send_test(3, "de", checkout_id, OPERATOR, shop_id=DEFAULT_SHOP)

    (received,) = relay.handler.messages
    assert relay.handler.recipients == [[OPERATOR]]
    assert received["To"] == OPERATOR and sent.to == OPERATOR
    # (A long non-ASCII subject is folded onto the next line, which a parser reads as a
    # leading space: build_message's habit, the step's own emails have it too.)
    assert received["Subject"].strip() == sent.subject
    assert sent.subject.startswith("[Test] Letzte Erinnerung: Ihr Warenkorb")
    step_id = message_id_for(step_key(workflow_id_for(checkout_id), 2), "shop.test")
    assert received["Message-ID"] not in (None, step_id)
    assert received["List-Unsubscribe"] is None  # its button would unsubscribe the buyer
    assert BUYER not in received.as_string()
    assert "COMEBACK-7KQ2M-XR9PT" in received.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert await _counts(parts.store) == before
    stored = await parts.store.get(checkout_id)
    assert stored is not None and [a.type for a in stored.activities] == [ActivityType.SCHEDULED]

    # A second test has a Message-ID of its own too.
    await parts.previews.send_test(1, "en", None, OPERATOR, shop_id=DEFAULT_SHOP)
    assert relay.handler.messages[1]["Message-ID"] != received["Message-ID"]


@pytest.mark.parametrize(
    "to",
    [
        BUYER,
        "ADA@Example.com",
        " ada@example.com ",
        "not-an-address",
        "ops@example.com\r\nBcc: x@evil.example",
        "",
    ],
)
async def test_the_buyers_or_a_malformed_address_is_refused(
    parts: Parts, relay: Relay, to: str
) -> None:
    checkout_id = await _reported(parts.store)
    with pytest.raises(InvalidInputError) as refused:
        await parts.previews.send_test(1, "en", checkout_id, to, shop_id=DEFAULT_SHOP)
    assert "buyer" in str(refused.value) or "not a valid email address" in str(refused.value)
    assert relay.handler.messages == []


async def test_a_shops_preview_is_the_email_its_own_worker_sends(
    store: SqlStore, relay: Relay
) -> None:
    """With shops, the preview of a shop's checkout is composed as that shop's worker composes
    it (activities.shop_composers): its sender and its name, not the deployment's."""
    shops = ShopStore(store.engine)
    settings = ShopSettings(shop_name="Bazaar B", mail_from="Bazaar B <news@bazaar-b.example.org>")
    await shops.add("shop-b", "Shop B", settings)
    checkout = sample_checkout().model_copy(update={"created_date": NOW})
    await store.save_reported(checkout.model_copy(update={"id": "c-b"}), NOW, shop_id="shop-b")
    deployment = engine_settings(relay.config.port)

    async def policy(shop_id: str) -> RecoveryPolicy:
        return POLICY

    previews = EmailPreviews(
        EmailComposer(TemplateRenderer(), SENDER, "Test Shop"),
        store,
        policy,
        relay.config,
        composers=shop_composers_for(deployment, store, SampleCoupons()),
        clock=lambda: NOW,
    )
    theirs = await previews.preview(1, "en", "c-b", shop_id="shop-b")
    sample = await previews.preview(1, "en", None, shop_id=DEFAULT_SHOP)

    assert theirs.sender == "Bazaar B <news@bazaar-b.example.org>"
    assert "Bazaar B" in theirs.subject
    assert sample.sender == SENDER.mail_from and "Test Shop" in sample.subject
    with pytest.raises(InvalidInputError):  # shop B's checkout is not the default shop's
        await previews.preview(1, "en", "c-b", shop_id=DEFAULT_SHOP)
