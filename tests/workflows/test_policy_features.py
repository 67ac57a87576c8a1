"""Recovery policy features on the time-skipping test server, with real SMTP and a real store.

Each scenario checks the activity entries (types, reasons, times) and the mail the SMTP server
received, as a shop would.
"""

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
from temporalio.testing import WorkflowEnvironment

from api.app import ApiParts, create_app
from domain.access import Scope
from domain.activity import ActivityType, NotSentReason
from domain.checkout import AbandonedCheckout
from domain.policy import Coupon, RecoveryPolicy, parse_policy
from domain.schedule import in_holdout, plan
from service.checkouts import CheckoutService
from store.api_keys import ApiKeyStore
from store.attribution import revenue_by_step
from store.coupons import StoreCouponProvider
from store.sql import SqlStore
from tests.support import (
    SmtpServer,
    body_text,
    engine_settings,
    eventually,
    running_engine,
    sample_checkout,
    seconds_between,
)
from tests.workflows.scenarios import entries, flow_result, has_entry, report_now
from workers.link_secret import link_signer_for

TOLERANCE = 5.0
_LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def _policy(*steps: dict[str, Any], **keys: Any) -> RecoveryPolicy:
    return parse_policy({"name": "test", "listen_window": "1h", **keys, "steps": list(steps)}, "t")


def _email(delay: Any, template: str = "reminder", **keys: Any) -> dict[str, Any]:
    return {"delay": delay, "action": "email", "template": template, **keys}


def _close_to(moment: datetime, expected: datetime) -> bool:
    return abs(seconds_between(moment, expected)) < TOLERANCE


async def _times(store: SqlStore, checkout_id: str, kind: ActivityType) -> list[datetime]:
    found = await store.get(checkout_id)
    assert found is not None
    return [a.created_date for a in found.activities if a.type is kind]


def _next_dst_change(after: datetime) -> datetime:
    """Noon (Berlin) of the first day whose UTC offset differs from the day before."""
    day = after.astimezone(BERLIN).date() + timedelta(days=1)
    while True:
        today = datetime.combine(day, datetime.min.time().replace(hour=12), tzinfo=BERLIN)
        if today.utcoffset() != (today - timedelta(days=1)).utcoffset():
            return today
        day += timedelta(days=1)


async def test_a_step_due_at_23h_buyer_time_waits_for_9h_across_a_dst_change(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    now = await env.get_current_time()
    change_day = _next_dst_change(now)
    # 23:00 Berlin on the evening before the clocks change; the next 09:00 is on the other side.
    due = change_day.replace(hour=23) - timedelta(days=1)
    policy = _policy(
        _email(due - now), send_window={"start": "09:00", "end": "20:00"}, time_zone="UTC"
    )
    checkout = sample_checkout(buyerTimeZone="Europe/Berlin")
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, _ = await report_now(service, env, checkout, policy)
        await flow_result(service, env, checkout_id)

    [sent] = await _times(store, checkout_id, ActivityType.EMAIL_SENT)
    opening = change_day.replace(hour=9)
    assert _close_to(sent, opening), (sent, opening)
    assert sent.astimezone(BERLIN).hour == 9
    assert due.utcoffset() != opening.utcoffset()  # the wait did cross the change
    assert len(smtp.handler.messages) == 1


async def test_two_checkouts_of_one_buyer_get_one_email_now_and_one_deferred(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    policy = _policy(_email("1h"), frequency_cap={"window": "24h", "when_capped": "defer"})
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        first, _ = await report_now(service, env, sample_checkout(checkoutId="first"), policy)
        await env.sleep(timedelta(hours=2))
        await eventually(has_entry(store, first, ActivityType.EMAIL_SENT), what="first email")
        second, _ = await report_now(service, env, sample_checkout(checkoutId="second"), policy)
        await env.sleep(timedelta(hours=2))  # the second checkout's step comes due, capped
        assert len(smtp.handler.messages) == 1
        assert await entries(store, second) == [(ActivityType.SCHEDULED, None)]
        await flow_result(service, env, second)

    [first_sent] = await _times(store, first, ActivityType.EMAIL_SENT)
    [second_sent] = await _times(store, second, ActivityType.EMAIL_SENT)
    assert _close_to(second_sent, first_sent + timedelta(hours=24)), (first_sent, second_sent)
    assert len(smtp.handler.messages) == 2


async def test_a_capped_email_is_skipped_when_the_policy_says_skip(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    policy = _policy(_email("1h"), frequency_cap={"window": "24h", "when_capped": "skip"})
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        first, _ = await report_now(service, env, sample_checkout(checkoutId="first"), policy)
        second, _ = await report_now(service, env, sample_checkout(checkoutId="second"), policy)
        await flow_result(service, env, first)
        await flow_result(service, env, second)

    outcomes = sorted([(await entries(store, c))[1] for c in (first, second)])
    assert outcomes == [
        (ActivityType.EMAIL_NOT_SENT, NotSentReason.FREQUENCY_CAPPED),
        (ActivityType.EMAIL_SENT, None),
    ]
    assert len(smtp.handler.messages) == 1


async def test_unsubscribe_between_steps_stops_later_emails(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    settings = engine_settings(smtp.port)
    no_cap = {"window": "0s"}
    policy = _policy(_email("1h"), _email("5h", "last_chance"), frequency_cap=no_cap)
    async with running_engine(env.client, store, settings) as service:
        checkout_id, _ = await report_now(service, env, sample_checkout(), policy)
        other, _ = await report_now(service, env, sample_checkout(checkoutId="other"), policy)
        await env.sleep(timedelta(hours=2))
        await eventually(has_entry(store, checkout_id, ActivityType.EMAIL_SENT), what="step 1")

        [message, *_] = smtp.handler.messages
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https, mailto = (part.strip(" <>") for part in message["List-Unsubscribe"].split(","))
        assert mailto.startswith("mailto:unsubscribe@shop.test?subject=unsubscribe")
        assert https in body_text(message, "html") and https in body_text(message, "plain")
        # What a mail client's one-click button does (RFC 8058), against the real routes.
        answer = await _post_one_click(service, store, settings, https)
        assert answer.status_code == 200 and "unsubscribed" in answer.text
        await flow_result(service, env, checkout_id)
        await flow_result(service, env, other)

    for flow in (checkout_id, other):
        assert (await entries(store, flow))[-1] == (
            ActivityType.EMAIL_NOT_SENT,
            NotSentReason.UNSUBSCRIBED,
        )
    subjects = [m["Subject"] for m in smtp.handler.messages]
    assert len(subjects) == 2 and not any("Last chance" in s for s in subjects)


async def _post_one_click(
    service: CheckoutService, store: SqlStore, settings: Any, url: str
) -> httpx.Response:
    split = urlsplit(url)
    async with _api(service, store, settings) as http:
        return await http.post(
            f"{split.path}?{split.query}",
            content="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )


async def test_a_retried_coupon_step_creates_one_code(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    smtp.handler.refuse_data = 2  # two attempts fail after the code was made
    policy = _policy(_email("1h", coupon={"percent_off": 15, "valid_for": "2d"}))
    settings = engine_settings(smtp.port)
    async with running_engine(env.client, store, settings) as service:
        checkout_id, _ = await report_now(service, env, sample_checkout(), policy)
        await flow_result(service, env, checkout_id)

        provider = StoreCouponProvider(store.engine)
        codes = await provider.codes_for(checkout_id)
        assert smtp.handler.refusals == 2
        [message] = smtp.handler.messages
        assert len(codes) == 1 and codes[0].startswith("BACK-")
        assert codes[0] in body_text(message, "plain") and "15%" in body_text(message, "plain")

        # The shop's checkout looks the code up and redeems it, once.
        keys = ApiKeyStore(store.engine)
        _, reader = await keys.create("reader", frozenset({Scope.READ}))
        _, manager = await keys.create("manager", frozenset({Scope.MANAGE}))
        path = f"/ecom/v1/abandoned-checkout/coupons/{codes[0]}"
        async with _api(service, store, settings) as http:
            looked_up = await http.get(path, headers={"Authorization": f"Bearer {reader}"})
            as_manager = {"Authorization": f"Bearer {manager}"}
            first = await http.post(f"{path}/redeem", headers=as_manager)
            second = await http.post(f"{path}/redeem", headers=as_manager)
            unknown = await http.post(f"{path}X/redeem", headers=as_manager)
            # A code made long ago, for another step: its validity has run out.
            await provider.issue("old-key", checkout_id, Coupon(percent_off=5), "EUR", _LONG_AGO)
            old = next(c for c in await provider.codes_for(checkout_id) if c != codes[0])
            expired = await http.post(
                f"/ecom/v1/abandoned-checkout/coupons/{old}/redeem", headers=as_manager
            )
    assert looked_up.status_code == 200
    coupon = looked_up.json()["coupon"]
    assert (coupon["checkoutId"], coupon["percentOff"]) == (checkout_id, 15)
    assert "redeemedDate" not in coupon
    assert first.status_code == 200 and "redeemedDate" in first.json()["coupon"]
    assert (second.status_code, second.json()["code"]) == (409, "coupon_redeemed")
    assert unknown.status_code == 404
    assert (expired.status_code, expired.json()["code"]) == (410, "coupon_expired")
    assert await provider.is_redeemed(codes[0]) and not await provider.is_redeemed(old)


async def test_recovery_through_the_link_is_attributed_to_that_link(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    settings = engine_settings(smtp.port)
    no_cap = {"window": "0s"}
    policy = _policy(_email("1h"), _email("3h", "last_chance"), frequency_cap=no_cap)
    async with running_engine(env.client, store, settings) as service:
        linked, _ = await report_now(service, env, sample_checkout(checkoutId="l"), policy)
        assisted, _ = await report_now(service, env, sample_checkout(checkoutId="a"), policy)
        organic, _ = await report_now(service, env, sample_checkout(checkoutId="o"), policy)
        await env.sleep(timedelta(hours=4))
        for flow in (linked, assisted):
            await eventually(has_entry(store, flow, ActivityType.EMAIL_SENT, 2), what="emails")
        link = _link_in(smtp, linked, settings)
        async with _api(service, store, settings) as http:
            followed = await http.get(link)
        assert followed.status_code == 302
        now = await env.get_current_time()
        await service.recover(linked, recovered_at=now)
        await service.recover(assisted, recovered_at=now)
        await service.recover(organic, recovered_at=now - timedelta(hours=3, minutes=30))

    def attribution(record: AbandonedCheckout | None) -> tuple[str, int | None, str | None]:
        assert record is not None and record.recovery_attribution is not None
        a = record.recovery_attribution
        return a.kind, a.step, a.recovered_amount

    assert attribution(await store.get(linked)) == ("link", 2, "89.90")
    assert attribution(await store.get(assisted)) == ("assisted", 2, "89.90")
    assert attribution(await store.get(organic)) == ("organic", None, "89.90")
    revenue = {(r.step, r.attribution): r.revenue for r in await revenue_by_step(store.engine)}
    assert {k: str(v) for k, v in revenue.items()} == {
        (2, "link"): "89.90",
        (2, "assisted"): "89.90",
        (None, "organic"): "89.90",
    }
    # The same figures over HTTP (read scope), as a decimal string per step and attribution.
    async with _api(service, store, settings) as http:
        _, token = await ApiKeyStore(store.engine).create("revenue", frozenset({Scope.READ}))
        answer = await http.get(
            "/ecom/v1/abandoned-checkout/recovered-revenue",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 200, answer.text
    assert [(r["step"], r["attribution"], r["revenue"]) for r in answer.json()["rows"]] == [
        (2, "assisted", "89.90"),
        (2, "link", "89.90"),
        (None, "organic", "89.90"),
    ]


def _link_in(smtp: SmtpServer, checkout_id: str, settings: Any) -> str:
    """The recovery link of the newest email to this checkout, as a path for the test client."""
    for message in reversed(smtp.handler.messages):
        for word in body_text(message, "plain").split():
            if f"/{checkout_id}/redirect-to-checkout" in word:
                split = urlsplit(word)
                assert parse_qs(split.query)["token"][0].startswith("2.")
                return f"{split.path}?{split.query}"
    raise AssertionError(f"no recovery link for {checkout_id}")


def _api(service: CheckoutService, store: SqlStore, settings: Any) -> httpx.AsyncClient:
    parts = ApiParts(
        service=service,
        store=store,
        policy=_policy(_email("1h")),
        links=link_signer_for(settings),
        codec=None,
        codec_cors_origins="",
        max_body_bytes=100_000,
    )
    transport = httpx.ASGITransport(app=create_app(parts))
    return httpx.AsyncClient(transport=transport, base_url="http://api")


async def test_steps_whose_conditions_fail_record_why_and_the_flow_goes_on(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    policy = _policy(
        _email("1h", conditions={"min_total": "100.00"}),
        _email("2h", "last_chance", conditions={"buyer": "visitor", "has_phone": False}),
        {"delay": "3h", "action": "task", "assignee": "sales", "conditions": {"has_phone": True}},
    )
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, _ = await report_now(service, env, sample_checkout(), policy)
        result = await flow_result(service, env, checkout_id)

    assert await entries(store, checkout_id) == [
        (ActivityType.SCHEDULED, None),
        (ActivityType.EMAIL_NOT_SENT, "condition_failed:min_total"),
        (ActivityType.EMAIL_SENT, None),
    ]
    assert result.steps_run == 3  # the task step was reached, and skipped without an entry
    assert await store.list_tasks() == []
    assert [m["Subject"].split(":")[0] for m in smtp.handler.messages] == ["Last chance"]


async def test_consent_first_email_only_mails_a_non_subscriber_once(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    policy = _policy(
        _email("1h"),
        _email("2h", "last_chance"),
        consent="first_email_only",
        frequency_cap={"window": "0s"},
    )
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        visitor, _ = await report_now(service, env, sample_checkout(), policy)
        subscriber, _ = await report_now(
            service, env, sample_checkout(marketingConsent=True), policy
        )
        await flow_result(service, env, visitor)
        await flow_result(service, env, subscriber)

    def decisions(record: AbandonedCheckout | None) -> list[tuple[str, str | None, str | None]]:
        assert record is not None
        return [(a.type, a.reason, a.consent) for a in record.activities[1:]]

    assert decisions(await store.get(visitor)) == [
        (ActivityType.EMAIL_SENT, None, "first_email"),
        (ActivityType.EMAIL_NOT_SENT, NotSentReason.NO_CONSENT, "refused"),
    ]
    assert decisions(await store.get(subscriber)) == [
        (ActivityType.EMAIL_SENT, None, "subscriber"),
        (ActivityType.EMAIL_SENT, None, "subscriber"),
    ]
    assert len(smtp.handler.messages) == 3


async def test_holdout_checkouts_receive_nothing_and_say_so(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    policy = _policy(_email("1h"), holdout_percent=50, frequency_cap={"window": "0s"})
    candidates = [sample_checkout(checkoutId=f"holdout-{n}") for n in range(6)]
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        flows = [(await report_now(service, env, c, policy))[0] for c in candidates]
        for flow in flows:
            await flow_result(service, env, flow)

    held = [f for f in flows if in_holdout(f, 50)]
    treated = [f for f in flows if not in_holdout(f, 50)]
    assert held and treated  # 6 ids fall on both sides of a 50% split (fixed ids, fixed hash)
    for flow in held:
        assert (await entries(store, flow))[1] == (
            ActivityType.EMAIL_NOT_SENT,
            NotSentReason.HOLDOUT,
        )
    for flow in treated:
        assert (await entries(store, flow))[1] == (ActivityType.EMAIL_SENT, None)
    assert len(smtp.handler.messages) == len(treated)


async def test_a_stale_report_is_recorded_but_not_messaged_and_overdue_steps_can_be_skipped(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    policy = _policy(
        _email("1h"),
        _email("3h", "last_chance"),
        max_age="30d",
        overdue_steps="skip",
        frequency_cap={"window": "0s"},
    )
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        now = await env.get_current_time()
        stale = await _report_abandoned_at(service, policy, now - timedelta(days=40), now)
        late = await _report_abandoned_at(service, policy, now - timedelta(hours=2), now)
        await flow_result(service, env, stale)
        await flow_result(service, env, late)

    assert await entries(store, stale) == [
        (ActivityType.SCHEDULED, None),
        (ActivityType.EMAIL_NOT_SENT, NotSentReason.STALE_REPORT),
        (ActivityType.EMAIL_NOT_SENT, NotSentReason.STALE_REPORT),
    ]
    assert await entries(store, late) == [
        (ActivityType.SCHEDULED, None),
        (ActivityType.EMAIL_NOT_SENT, NotSentReason.OVERDUE),
        (ActivityType.EMAIL_SENT, None),
    ]
    [sent] = await _times(store, late, ActivityType.EMAIL_SENT)
    assert _close_to(sent, now + timedelta(hours=1))  # abandoned 2 h before, due at 3 h
    assert len(smtp.handler.messages) == 1


async def _report_abandoned_at(
    service: CheckoutService, policy: RecoveryPolicy, abandoned: datetime, now: datetime
) -> str:
    checkout = sample_checkout().model_copy(update={"created_date": abandoned})
    return (await service.report(checkout, policy, now=now)).checkout_id


async def test_cart_update_reset_restarts_the_schedule_and_keep_holds_it(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    steps = (_email("1h"), _email("5h", "last_chance"))
    no_cap = {"window": "0s"}
    reset = _policy(*steps, on_cart_update="reset", frequency_cap=no_cap)
    keep = _policy(*steps, on_cart_update="keep", frequency_cap=no_cap)
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        reset_id, reported = await report_now(service, env, sample_checkout(), reset)
        keep_id, _ = await report_now(service, env, sample_checkout(), keep)
        await env.sleep(timedelta(hours=2))
        for flow in (reset_id, keep_id):
            await eventually(has_entry(store, flow, ActivityType.EMAIL_SENT), what="step 1")
        updated_at = await env.get_current_time()
        for flow, source in ((reset_id, reported), (keep_id, reported)):
            smaller = source.model_copy(update={"id": flow, "line_items": source.line_items[:1]})
            await service.update(smaller)
        await flow_result(service, env, reset_id)
        await flow_result(service, env, keep_id)

    assert reported.created_date is not None
    reset_second = (await _times(store, reset_id, ActivityType.EMAIL_SENT))[1]
    keep_second = (await _times(store, keep_id, ActivityType.EMAIL_SENT))[1]
    assert _close_to(reset_second, updated_at + timedelta(hours=5)), (reset_second, updated_at)
    assert _close_to(keep_second, reported.created_date + timedelta(hours=5))
    last_chances = [m for m in smtp.handler.messages if m["Subject"].startswith("Last chance")]
    assert len(last_chances) == 2
    for message in last_chances:  # both show the newest snapshot
        text = body_text(message, "plain")
        assert "Linen shirt" in text and "Canvas tote" not in text


async def test_a_german_buyer_gets_the_german_email_with_german_money(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    policy = _policy(_email("1h"))
    german = sample_checkout(buyerLanguage="de-DE", buyerTimeZone="Europe/Berlin")
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, _ = await report_now(service, env, german, policy)
        await flow_result(service, env, checkout_id)

    [message] = smtp.handler.messages
    text = body_text(message, "plain")
    assert "89,90\u00a0€" in text and "Warenkorb" in message["Subject"]
    [sent] = await _times(store, checkout_id, ActivityType.EMAIL_SENT)
    assert message["Date"].datetime == sent.replace(microsecond=0)


async def test_policy_check_prints_the_consent_the_flow_takes_after_a_skipped_first_email(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    """first_email_only counts only email steps that reached the consent decision: with step 1
    ruled out by its condition, step 2 is the first email, in `policy check` as in the flow."""
    env = time_skipping_env
    policy = _policy(
        _email("1h", conditions={"min_total": "1000.00"}),
        _email("2h", template="last_chance"),
        consent="first_email_only",
    )
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        checkout_id, checkout = await report_now(service, env, sample_checkout(), policy)
        assert checkout.created_date is not None
        printed = plan(policy, checkout, checkout.created_date, checkout.created_date)
        await flow_result(service, env, checkout_id)

    assert [p.outcome for p in printed] == ["skip: condition_failed:min_total", "send"]
    assert [p.consent for p in printed] == [None, "first_email"]
    found = await store.get(checkout_id)
    assert found is not None
    happened = [(a.type, a.reason, a.consent) for a in found.activities[1:]]
    assert happened == [
        (ActivityType.EMAIL_NOT_SENT, "condition_failed:min_total", None),
        (ActivityType.EMAIL_SENT, None, "first_email"),
    ]
    assert len(smtp.handler.messages) == 1
