"""An email step with two variants, end to end on the time-skipping server: each buyer's SMTP
message has their variant's subject or template, and the entry says which variant it was."""

from temporalio.testing import WorkflowEnvironment

from domain.activity import ActivityType
from domain.checkout import AbandonedCheckout
from domain.policy import EmailStep, parse_policy
from domain.variants import assign_variant
from service.checkouts import derive_checkout_id
from store.sql import SqlStore
from tests.support import SmtpServer, engine_settings, running_engine, sample_checkout
from tests.workflows.scenarios import flow_result, report_now

POLICY = parse_policy(
    {
        "name": "ab",
        "listen_window": "1h",
        "frequency_cap": {"window": "0s"},
        "steps": [
            {
                "delay": "1h",
                "action": "email",
                "template": "reminder",
                "variants": [
                    {"name": "short", "subject": "{{ first_name }}, still deciding?"},
                    {"name": "urgent", "template": "last_chance"},
                ],
            }
        ],
    },
    "test",
)


async def test_each_buyer_gets_their_variant(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    step = POLICY.steps[0]
    assert isinstance(step, EmailStep)
    # One checkout for each variant, found by the rule the activity applies.
    chosen: dict[str, AbandonedCheckout] = {}
    while len(chosen) < 2:
        checkout = sample_checkout(
            buyerInfo={"email": f"b{len(chosen)}@example.com", "visitorId": "v"}
        )
        variant = assign_variant(step, derive_checkout_id(checkout), 0)
        assert variant is not None
        chosen.setdefault(variant.name, checkout)
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        ids = {}
        for name, checkout in chosen.items():
            ids[name], _ = await report_now(service, env, checkout, POLICY)
        for checkout_id in ids.values():
            await flow_result(service, env, checkout_id)

    subjects = {m["To"]: m["Subject"] for m in smtp.handler.messages}
    short_to = chosen["short"].buyer_info.email
    urgent_to = chosen["urgent"].buyer_info.email
    assert short_to and urgent_to
    assert subjects[f"Ada Lovelace <{short_to}>"] == "Ada, still deciding?"
    assert subjects[f"Ada Lovelace <{urgent_to}>"].startswith("Last chance:")
    for name, checkout_id in ids.items():
        found = await store.get(checkout_id)
        assert found is not None
        sent = [a for a in found.activities if a.type == ActivityType.EMAIL_SENT]
        assert [(a.step, a.variant) for a in sent] == [(1, name)]
