"""A text renders as its shop's email would: the shop's name, templates and recovery links
(issue 17's per-shop sending, for the SMS channel). Time-skipping server, the real worker and
store, a real local HTTP server speaking Twilio's Messages API."""

from temporalio.testing import WorkflowEnvironment

from domain.shops import ShopSettings
from store.shops import ShopStore
from store.sql import SqlStore
from tests.sms.test_sms_flow import PUBLIC_URL, TEXTABLE, _engine, _policy, _sms
from tests.sms.twilio_server import TwilioServer
from tests.support import SmtpServer, sample_checkout
from tests.workflows.scenarios import flow_result

ACME_URL = "https://acme.example/recovery"


async def test_each_shops_text_carries_its_own_name_and_links(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, twilio: TwilioServer
) -> None:
    env = time_skipping_env
    await ShopStore(store.engine).add(
        "acme", "Acme", ShopSettings(shop_name="Acme Tools", public_url=ACME_URL)
    )
    policy = _policy(_sms("1h"))
    async with _engine(env, store, smtp, twilio) as service:
        ids = {}
        for shop in ("acme", "default"):
            now = await env.get_current_time()
            checkout = sample_checkout(**TEXTABLE).model_copy(update={"created_date": now})
            outcome = await service.report(checkout, policy, now=now, shop_id=shop)
            assert outcome.new
            ids[shop] = outcome.checkout_id
        for checkout_id in ids.values():
            await flow_result(service, env, checkout_id)

    bodies = sorted(text.form["Body"] for text in twilio.texts)
    assert len(bodies) == 2, bodies
    acme, default = bodies
    assert acme.startswith("Acme Tools: Ada, you left") and f"{ACME_URL}/" in acme
    assert default.startswith("Test Shop: Ada, you left") and f"{PUBLIC_URL}/" in default
    assert ACME_URL not in default
