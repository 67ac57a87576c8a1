"""The providers' readers this deployment is configured for, by route name.

A provider without its settings has no reader, so its route answers 404: nothing is read from a
relay that was not set up, and no call is trusted on a default.
"""

from typing import Protocol

from pydantic import SecretStr

from api.feedback.generic import GenericFeedback
from api.feedback.postmark import PostmarkFeedback
from api.feedback.sendgrid import SendGridFeedback
from api.feedback.ses import HttpGet, SesFeedback
from api.feedback.source import FeedbackSource


class FeedbackSettings(Protocol):
    """The settings the readers take (workers.settings.Settings has them; api cannot import it)."""

    @property
    def ses_topic_arns(self) -> str | None: ...
    @property
    def sendgrid_verification_key(self) -> str | None: ...
    @property
    def postmark_webhook_user(self) -> str | None: ...
    @property
    def postmark_webhook_password(self) -> SecretStr | None: ...
    @property
    def feedback_signing_secret(self) -> SecretStr | None: ...


def topic_arns(value: str | None) -> frozenset[str]:
    """CHECKOUT_RECOVERY_SES_TOPIC_ARNS read: comma-separated, blanks ignored."""
    return frozenset(arn.strip() for arn in (value or "").split(",") if arn.strip())


def feedback_sources(
    settings: FeedbackSettings, http_get: HttpGet | None = None
) -> dict[str, FeedbackSource]:
    """The configured readers by name; ValueError (at start-up) for a setting that cannot work.

    `http_get` fetches SNS certificates and confirms subscriptions (httpx when None)."""
    sources: list[FeedbackSource] = []
    if arns := topic_arns(settings.ses_topic_arns):
        sources.append(SesFeedback(arns, http_get))
    if settings.sendgrid_verification_key:
        sources.append(SendGridFeedback(settings.sendgrid_verification_key))
    user, password = settings.postmark_webhook_user, settings.postmark_webhook_password
    if user or password:
        if not (user and password):
            raise ValueError(
                "set both CHECKOUT_RECOVERY_POSTMARK_WEBHOOK_USER and _PASSWORD, or neither"
            )
        sources.append(PostmarkFeedback(user, password.get_secret_value()))
    if settings.feedback_signing_secret:
        sources.append(GenericFeedback(settings.feedback_signing_secret.get_secret_value()))
    return {source.name: source for source in sources}
