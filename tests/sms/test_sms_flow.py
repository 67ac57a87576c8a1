"""SMS steps end to end on the time-skipping server: the real worker, activities and store, real
SMTP on loopback, and a real local HTTP server speaking Twilio's Messages API."""

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from api.sms_routes import INBOUND_PATH, SIGNATURE_HEADER, SmsInbound, sms_router
from domain.activity import ActivityType, NotSentReason
from domain.flow import step_key, workflow_id_for
from domain.policy import RecoveryPolicy, parse_policy
from domain.sms import twilio_signature
from service.checkouts import CheckoutService
from store.schema import sent_log
from store.sms_sends import SmsStops, sms_message_id
from store.sql import SqlStore
from tests.sms.twilio_server import FROM, SID, TOKEN, TwilioServer
from tests.support import SmtpServer, engine_settings, eventually, running_engine, sample_checkout
from tests.workflows.scenarios import entries, flow_result, has_entry, report_now

BERLIN = ZoneInfo("Europe/Berlin")
PUBLIC_URL = "https://recover.shop.test"
NUMBER = "+493012345678"
ANY_HOUR = {"start": "00:00", "end": "23:59:59"}
TEXTABLE: dict[str, Any] = {
    "contactDetails": {"firstName": "Ada", "phone": "+49 (30) 1234-5678"},
    "smsConsent": True,
}


def _policy(*steps: dict[str, Any], **keys: Any) -> RecoveryPolicy:
    values = {"name": "sms", "listen_window": "1h", "sms_window": ANY_HOUR, **keys}
    return parse_policy({**values, "steps": list(steps)}, "test")


def _sms(delay: str) -> dict[str, Any]:
    return {"action": "sms", "delay": delay}


@contextlib.asynccontextmanager
async def _engine(
    env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, twilio: TwilioServer
) -> AsyncIterator[CheckoutService]:
    settings = engine_settings(
        smtp.port,
        public_url=PUBLIC_URL,
        sms_api_url=twilio.base_url,
        sms_account_sid=SID,
        sms_auth_token=TOKEN,
        sms_from=FROM,
    )
    async with running_engine(env.client, store, settings) as service:
        yield service


def _sms_entries(
    found: list[tuple[ActivityType, str | None]],
) -> list[tuple[ActivityType, str | None]]:
    return [e for e in found if e[0] is not ActivityType.SCHEDULED]


async def test_a_consenting_buyer_gets_one_text_with_the_rendered_body_and_an_entry(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, twilio: TwilioServer
) -> None:
    env = time_skipping_env
    async with _engine(env, store, smtp, twilio) as service:
        checkout_id, _ = await report_now(
            service, env, sample_checkout(**TEXTABLE), _policy(_sms("1h"))
        )
        await flow_result(service, env, checkout_id)

    [text] = twilio.texts
    assert text.auth == (SID, TOKEN) and text.form["To"] == NUMBER and text.form["From"] == FROM
    body = text.form["Body"]
    assert body.startswith("Test Shop: Ada, you left 3 items (€89.90) in your cart.")
    assert f"{PUBLIC_URL}/" in body and "Reply STOP" in body  # the signed recovery link
    found = await store.get(checkout_id)
    assert found is not None
    [entry] = [a for a in found.activities if a.type is ActivityType.NOTIFICATION_SENT]
    assert (entry.channel, entry.step, entry.reason) == ("sms", 1, None)
    assert NUMBER not in entry.model_dump_json() and "5678" not in entry.model_dump_json()
    assert smtp.handler.messages == []


async def test_no_consent_no_text(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, twilio: TwilioServer
) -> None:
    env = time_skipping_env
    checkout = sample_checkout(contactDetails=TEXTABLE["contactDetails"])  # smsConsent absent
    async with _engine(env, store, smtp, twilio) as service:
        checkout_id, _ = await report_now(service, env, checkout, _policy(_sms("1h")))
        await flow_result(service, env, checkout_id)

    assert _sms_entries(await entries(store, checkout_id)) == [
        (ActivityType.NOTIFICATION_NOT_SENT, NotSentReason.NO_SMS_CONSENT)
    ]
    found = await store.get(checkout_id)
    assert found is not None and found.activities[-1].channel == "sms"
    assert twilio.received == []


async def test_a_text_due_at_22h_buyer_time_waits_for_9h(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, twilio: TwilioServer
) -> None:
    env = time_skipping_env
    now = await env.get_current_time()
    local = now.astimezone(BERLIN)
    due = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), BERLIN)
    due = due.replace(hour=22)
    policy = parse_policy(  # the default SMS window, 09:00-20:00
        {
            "name": "sms",
            "listen_window": "1h",
            "steps": [_sms(f"{int((due - now).total_seconds())}s")],
        },
        "test",
    )
    checkout = sample_checkout(**TEXTABLE, buyerTimeZone="Europe/Berlin")
    async with _engine(env, store, smtp, twilio) as service:
        checkout_id, _ = await report_now(service, env, checkout, policy)
        await flow_result(service, env, checkout_id)

    found = await store.get(checkout_id)
    assert found is not None
    [sent] = [a.created_date for a in found.activities if a.type is ActivityType.NOTIFICATION_SENT]
    opening = (due + timedelta(days=1)).replace(hour=9)
    assert abs((sent - opening).total_seconds()) < 5, (sent, opening)
    assert len(twilio.texts) == 1


async def test_an_email_then_a_text_within_the_cap_window_caps_the_text(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, twilio: TwilioServer
) -> None:
    env = time_skipping_env
    cap = {"window": "24h", "when_capped": "defer"}
    emails = _policy({"action": "email", "delay": "1h", "template": "reminder"}, frequency_cap=cap)
    texts = _policy(_sms("1h"), frequency_cap=cap)
    async with _engine(env, store, smtp, twilio) as service:
        mailed, _ = await report_now(service, env, sample_checkout(**TEXTABLE), emails)
        await env.sleep(timedelta(hours=2))
        await eventually(has_entry(store, mailed, ActivityType.EMAIL_SENT), what="the email")
        texted, _ = await report_now(service, env, sample_checkout(**TEXTABLE), texts)
        await flow_result(service, env, texted)

    assert _sms_entries(await entries(store, texted)) == [
        (ActivityType.NOTIFICATION_NOT_SENT, NotSentReason.FREQUENCY_CAPPED)
    ]
    assert len(smtp.handler.messages) == 1 and twilio.received == []


def _inbound_app(store: SqlStore) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(sms_router(SmsInbound(TOKEN, PUBLIC_URL), SmsStops(store)))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def _reply(
    http: httpx.AsyncClient, body: str, signature: str | None = None
) -> httpx.Response:
    form = {"MessageSid": "SM1", "AccountSid": SID, "From": NUMBER, "To": FROM, "Body": body}
    signed = twilio_signature(TOKEN, PUBLIC_URL + INBOUND_PATH, form.items())
    return await http.post(INBOUND_PATH, data=form, headers={SIGNATURE_HEADER: signature or signed})


async def test_stop_by_the_signed_webhook_stops_the_next_text(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, twilio: TwilioServer
) -> None:
    env = time_skipping_env
    policy = _policy(_sms("1h"), _sms("5h"))
    async with _engine(env, store, smtp, twilio) as service, _inbound_app(store) as http:
        checkout_id, _ = await report_now(service, env, sample_checkout(**TEXTABLE), policy)
        await env.sleep(timedelta(hours=2))
        await eventually(
            has_entry(store, checkout_id, ActivityType.NOTIFICATION_SENT), what="text 1"
        )
        forged = await _reply(http, "STOP", signature="bm90IGl0")
        assert forged.status_code == 403
        assert not await SmsStops(store).is_stopped(NUMBER)
        answer = await _reply(http, " Stop ")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/xml")
        assert answer.text.endswith("<Response/>")
        await flow_result(service, env, checkout_id)

    assert _sms_entries(await entries(store, checkout_id)) == [
        (ActivityType.NOTIFICATION_SENT, None),
        (ActivityType.NOTIFICATION_NOT_SENT, NotSentReason.SMS_STOP),
    ]
    assert len(twilio.texts) == 1
    async with _inbound_app(store) as http:
        assert (await _reply(http, "START")).status_code == 200
    assert not await SmsStops(store).is_stopped(NUMBER)


async def test_a_retry_that_finds_a_claim_in_doubt_sends_nothing(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, twilio: TwilioServer
) -> None:
    env = time_skipping_env
    async with _engine(env, store, smtp, twilio) as service:
        checkout_id, _ = await report_now(
            service, env, sample_checkout(**TEXTABLE), _policy(_sms("1h"))
        )
        # What an attempt that died during the provider's call leaves: its claim, no entry.
        key = step_key(workflow_id_for(checkout_id), 0)
        async with store.engine.begin() as conn:
            await conn.execute(
                sent_log.insert().values(
                    key=key,
                    checkout_id=checkout_id,
                    message_id=sms_message_id(key),
                    created_at=await env.get_current_time(),
                )
            )
        await flow_result(service, env, checkout_id)

    assert _sms_entries(await entries(store, checkout_id)) == [
        (ActivityType.NOTIFICATION_NOT_SENT, NotSentReason.DELIVERY_UNCONFIRMED)
    ]
    assert twilio.received == []


async def test_a_number_the_provider_refuses_records_sms_rejected_once(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, twilio: TwilioServer
) -> None:
    env = time_skipping_env
    twilio.answers.append((400, {"code": 21211, "message": "Invalid 'To' Phone Number"}))
    async with _engine(env, store, smtp, twilio) as service:
        checkout_id, _ = await report_now(
            service, env, sample_checkout(**TEXTABLE), _policy(_sms("1h"))
        )
        await flow_result(service, env, checkout_id)

    assert _sms_entries(await entries(store, checkout_id)) == [
        (ActivityType.NOTIFICATION_NOT_SENT, NotSentReason.SMS_REJECTED)
    ]
    assert len(twilio.received) == 1  # not retried
    async with store.engine.connect() as conn:
        assert (await conn.execute(sent_log.select())).all() == []  # the claim went back
