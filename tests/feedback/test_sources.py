"""Which readers a deployment has: each provider's route exists only once its settings are set,
read from the environment variables the README names."""

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from api.feedback.sources import feedback_sources
from domain.webhook_signing import new_secret
from workers.settings import Settings

PREFIX = "CHECKOUT_RECOVERY_"


def _sendgrid_key() -> str:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def test_no_settings_no_readers() -> None:
    assert feedback_sources(Settings()) == {}


def test_each_configured_provider_has_its_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        PREFIX + "SES_TOPIC_ARNS", "arn:aws:sns:eu-west-1:1:a, ,arn:aws:sns:eu-west-1:1:b"
    )
    monkeypatch.setenv(PREFIX + "SENDGRID_VERIFICATION_KEY", _sendgrid_key())
    monkeypatch.setenv(PREFIX + "POSTMARK_WEBHOOK_USER", "postmark")
    monkeypatch.setenv(PREFIX + "POSTMARK_WEBHOOK_PASSWORD", "s3cret")
    monkeypatch.setenv(PREFIX + "FEEDBACK_SIGNING_SECRET", new_secret())

    sources = feedback_sources(Settings())

    assert sorted(sources) == ["generic", "postmark", "sendgrid", "ses"]
    assert all(name == source.name for name, source in sources.items())


def test_postmark_needs_both_user_and_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PREFIX + "POSTMARK_WEBHOOK_USER", "postmark")

    with pytest.raises(ValueError, match="PASSWORD"):
        feedback_sources(Settings())


def test_a_feedback_secret_off_the_whsec_form_stops_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PREFIX + "FEEDBACK_SIGNING_SECRET", "plain-password")

    with pytest.raises(ValueError, match="whsec_") as refused:
        feedback_sources(Settings())

    # Refused at start-up without the secret in the message (a pydantic validator would quote it).
    assert "plain-password" not in str(refused.value)
