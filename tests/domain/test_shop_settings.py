"""A shop's effective settings: its own values where it sets them, the deployment's elsewhere."""

from pathlib import Path

import pytest

from domain.dkim import DkimSetting
from domain.errors import InvalidInputError
from domain.shops import ShopSettings, effective_settings, parse_shop_settings
from workers.settings import Settings

POLICY = """
name = "acme"
time_zone = "Europe/Paris"
[[steps]]
delay = "2h"
action = "email"
template = "reminder"
"""
DEPLOYMENT = Settings(
    shop_name="Our Shop",
    mail_from="Our Shop <recovery@shop.example>",
    public_url="https://recover.shop.example",
    default_language="en",
    templates_dir=Path("/srv/templates"),
    unsubscribe_mailbox="unsubscribe@shop.example",
)


def test_a_shop_with_no_settings_runs_exactly_as_the_deployment_does() -> None:
    effective = effective_settings(ShopSettings(), DEPLOYMENT)
    # Every setting a shop may override and the deployment has: the deployment's value.
    shared = set(ShopSettings.model_fields) & set(Settings.model_fields) - {"policy"}
    assert shared == {
        "shop_name",
        "mail_from",
        "public_url",
        "default_language",
        "templates_dir",
        "unsubscribe_mailbox",
    }
    for name in shared:
        assert getattr(effective, name) == getattr(DEPLOYMENT, name), name
    # What the deployment has no setting for stays as a deployment without shops behaves: no
    # Reply-To, Message-IDs on the sender's domain, the policy's zone, the engine's policy.
    assert (effective.reply_to, effective.message_id_domain, effective.time_zone) == (None,) * 3
    assert effective.policy is None
    assert set(effective.sources.values()) == {"deployment"}
    assert set(effective.sources) == set(ShopSettings.model_fields)


# A sealed key's shape only: effective_settings passes it on and never opens it.
DKIM = DkimSetting(
    domain="acme.example",
    selector="recovery1",
    fingerprint="sha256:0123456789abcdef",
    sealed_key="sealed1.not-a-real-key",
)


def test_a_value_the_shop_sets_wins_and_says_so() -> None:
    shop = ShopSettings(
        policy=POLICY,
        shop_name="Acme",
        mail_from="Acme <hello@acme.example>",
        reply_to="help@acme.example",
        message_id_domain="mail.acme.example",
        public_url="https://acme.example/recovery",
        default_language="fr",
        time_zone="Europe/Paris",
        templates_dir="/srv/acme-templates",
        unsubscribe_mailbox="stop@acme.example",
        dkim=DKIM,
    )
    effective = effective_settings(shop, DEPLOYMENT)
    assert effective.policy is not None and effective.policy.name == "acme"
    assert (effective.shop_name, effective.mail_from, effective.reply_to) == (
        "Acme",
        "Acme <hello@acme.example>",
        "help@acme.example",
    )
    assert effective.message_id_domain == "mail.acme.example"
    assert effective.public_url == "https://acme.example/recovery"
    assert (effective.default_language, effective.time_zone) == ("fr", "Europe/Paris")
    assert effective.templates_dir == Path("/srv/acme-templates")
    assert effective.unsubscribe_mailbox == "stop@acme.example"
    assert effective.dkim == DKIM
    assert set(effective.sources.values()) == {"shop"}


def test_only_the_fields_set_come_from_the_shop() -> None:
    effective = effective_settings(ShopSettings(shop_name="Acme"), DEPLOYMENT)
    assert effective.shop_name == "Acme"
    assert effective.mail_from == DEPLOYMENT.mail_from
    assert {name for name, source in effective.sources.items() if source == "shop"} == {"shop_name"}


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("policy", POLICY.replace('"2h"', '"2 hours"'), "step 1 (email): delay"),
        ("policy", "name = [", "not valid TOML"),
        ("mailFrom", "Acme hello at acme", "not an email address"),
        ("replyTo", "a@b\r\nBcc: x@y.example", "not an email address"),
        ("unsubscribeMailbox", "Stop <stop@acme.example>", "an address alone"),
        ("messageIdDomain", "acme example", "not a domain name"),
        ("publicUrl", "acme.example", "not an http(s) URL"),
        ("defaultLanguage", "english please", "not a language tag"),
        ("timeZone", "Mars/Olympus", "not an IANA time zone"),
        ("templatesDir", "/srv/\nx", "control character"),
        ("shopName", "", "at least 1"),
        ("colour", "blue", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_field(field: str, value: str, says: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        parse_shop_settings({field: value})
    assert len(raised.value.problems) == 1
    assert says in raised.value.problems[0]
