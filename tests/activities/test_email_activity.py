"""The email activity alone, executed as Temporal would execute it, against real SMTP and SQLite."""

from datetime import UTC, datetime

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.email_message import Sender, message_id_for
from activities.rendering import TemplateRenderer
from activities.smtp_pool import SmtpPool
from domain.activity import ActivityType, NotSentReason
from domain.flow import step_key, workflow_id_for
from domain.policy import EmailStep
from domain.smtp import SmtpConfig
from domain.steps import PERMANENT_EMAIL_FAILURE, EmailStepRequest
from store.sql import SendClaim, SqlStore
from tests.support import SmtpServer, body_text, sample_checkout

SENDER = Sender("Test Shop <recovery@shop.test>")
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


async def _reported(store: SqlStore) -> str:
    checkout = sample_checkout().model_copy(update={"id": "c-1", "created_date": NOW})
    await store.save_reported(checkout, NOW)
    return "c-1"


def _request(checkout_id: str, step_index: int = 0) -> EmailStepRequest:
    workflow_id = workflow_id_for(checkout_id)
    return EmailStepRequest(
        checkout_id=checkout_id,
        workflow_id=workflow_id,
        step_index=step_index,
        key=step_key(workflow_id, step_index),
        at=NOW,
        step=EmailStep(action="email", template="reminder", delay="1h"),
    )


@pytest.fixture
async def email(store: SqlStore, smtp: SmtpServer):
    pool = SmtpPool(SmtpConfig(host="127.0.0.1", port=smtp.port, pool_size=2))
    yield EmailActivities(store, pool, TemplateRenderer(), SENDER, "Test Shop")
    await pool.close()


async def test_same_key_twice_delivers_one_message(email, store: SqlStore, smtp: SmtpServer):
    checkout_id = await _reported(store)
    env = ActivityEnvironment()
    first = await env.run(email.send_recovery_email, _request(checkout_id))
    second = await env.run(email.send_recovery_email, _request(checkout_id))

    assert first.type == second.type == ActivityType.EMAIL_SENT
    assert len(smtp.handler.messages) == 1
    record = await store.get(checkout_id)
    assert record is not None
    assert [a.type for a in record.activities] == [ActivityType.SCHEDULED, ActivityType.EMAIL_SENT]


async def test_message_has_deterministic_id_both_parts_and_the_checkout_link(
    email, store: SqlStore, smtp: SmtpServer
):
    checkout_id = await _reported(store)
    request = _request(checkout_id)
    await ActivityEnvironment().run(email.send_recovery_email, request)

    (message,) = smtp.handler.messages
    assert message["Message-ID"] == message_id_for(request.key, "shop.test")
    assert message["From"] == "Test Shop <recovery@shop.test>"
    html, text = body_text(message, "html"), body_text(message, "plain")
    assert 'href="https://shop.example/checkout?id=42"' in html
    assert "https://shop.example/checkout?id=42" in text
    assert "Hi Ada," in text and "Linen shirt x 2: €30.00" in text and "Total: €89.90" in text


async def test_html_escapes_what_the_shop_sent(email, store: SqlStore, smtp: SmtpServer):
    checkout = sample_checkout(contactDetails={"firstName": "<script>alert(1)</script>"})
    await store.save_reported(checkout.model_copy(update={"id": "c-x", "created_date": NOW}), NOW)
    await ActivityEnvironment().run(email.send_recovery_email, _request("c-x"))

    html = body_text(smtp.handler.messages[0], "html")
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


async def test_a_send_left_in_doubt_is_not_repeated(email, store: SqlStore, smtp: SmtpServer):
    checkout_id = await _reported(store)
    request = _request(checkout_id)
    # As if an earlier attempt claimed the send and its worker died before confirming it.
    start = await store.begin_send(checkout_id, request.key, "<x@shop.test>", NOW)
    assert start.claim is SendClaim.CLAIMED

    outcome = await ActivityEnvironment().run(email.send_recovery_email, request)

    assert (outcome.type, outcome.reason) == (
        ActivityType.EMAIL_NOT_SENT,
        NotSentReason.DELIVERY_UNCONFIRMED,
    )
    assert smtp.handler.messages == []


async def test_refused_recipient_is_a_permanent_failure_and_frees_the_claim(
    email, store: SqlStore, smtp: SmtpServer
):
    checkout_id = await _reported(store)
    smtp.handler.rejected_recipients.add("ada@example.com")
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(email.send_recovery_email, _request(checkout_id))

    assert raised.value.type == PERMANENT_EMAIL_FAILURE
    assert raised.value.non_retryable
    assert raised.value.details == (NotSentReason.INVALID_ADDRESS,)
    smtp.handler.rejected_recipients.clear()
    retried = await ActivityEnvironment().run(email.send_recovery_email, _request(checkout_id))
    assert retried.type == ActivityType.EMAIL_SENT


async def test_temporary_refusal_is_retryable(email, store: SqlStore, smtp: SmtpServer):
    checkout_id = await _reported(store)
    smtp.handler.refuse_data = 1
    with pytest.raises(Exception) as raised:
        await ActivityEnvironment().run(email.send_recovery_email, _request(checkout_id))
    assert not isinstance(raised.value, ApplicationError)
    # The claim went back: the retry sends, exactly once.
    await ActivityEnvironment().run(email.send_recovery_email, _request(checkout_id))
    assert len(smtp.handler.messages) == 1


async def test_buyer_without_email_gets_not_sent(email, store: SqlStore, smtp: SmtpServer):
    checkout = sample_checkout(buyerInfo={"userId": "u-1"})
    await store.save_reported(checkout.model_copy(update={"id": "c-n", "created_date": NOW}), NOW)
    outcome = await ActivityEnvironment().run(email.send_recovery_email, _request("c-n"))
    assert (outcome.type, outcome.reason) == (ActivityType.EMAIL_NOT_SENT, NotSentReason.NO_EMAIL)
    assert smtp.handler.messages == []


async def test_non_ascii_names_survive_the_headers(email, store: SqlStore, smtp: SmtpServer):
    checkout = sample_checkout(contactDetails={"firstName": "Zoë", "lastName": "Łukasiewicz"})
    await store.save_reported(checkout.model_copy(update={"id": "c-u", "created_date": NOW}), NOW)
    await ActivityEnvironment().run(email.send_recovery_email, _request("c-u"))

    (message,) = smtp.handler.messages
    assert message["To"] == "Zoë Łukasiewicz <ada@example.com>"
    assert message["Subject"] == "Zoë, you left something in your cart at Test Shop"
    assert "Hi Zoë," in body_text(message, "plain")
