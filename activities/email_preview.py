"""Any email step's email before it goes out, and "send me a test" to an operator.

The preview is composed by the step's own rule (activities.email_compose, the composer the
worker's email step uses), for a stored checkout or the built-in sample of template checks, in a
language the operator picks, with two differences only: the step's coupon is a sample code that no
provider issued (nothing is stored), and the time is now. It is read back out of the MIME message
by the rule the sent copies use (domain.sent_email), so the dashboard shows it as it shows a sent
email.

The test send is that message to an operator's address, never the buyer's: To replaced, Subject
marked `[Test] `, a Message-ID of its own, no List-Unsubscribe header (a mail client's unsubscribe
button would unsubscribe the buyer), sent over a pool of its own. It is recorded nowhere: no
activity entry, no send claim, no frequency cap, no copy.
"""

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.message import Message

import aiosmtplib
from pydantic import EmailStr, TypeAdapter, ValidationError

from activities.email_compose import ComposeError, EmailComposer
from activities.email_message import header_text, message_id_for
from activities.shop_composers import ShopComposers
from activities.smtp_pool import SmtpPool
from activities.template_check import sample_cases, sample_coupon
from domain.checkout import AbandonedCheckout
from domain.coupons import IssuedCoupon
from domain.errors import InvalidInputError
from domain.flow import step_key, workflow_id_for
from domain.policy import Coupon, EmailStep, RecoveryPolicy
from domain.schedule import buyer_zone
from domain.sent_email import SentEmail, read_email
from domain.smtp import SmtpConfig
from domain.steps import EmailStepRequest
from store.sql import SqlStore

logger = logging.getLogger(__name__)

TEST_PREFIX = "[Test] "
_ADDRESS: TypeAdapter[str] = TypeAdapter(EmailStr)
"""The rule a buyer's email is checked by (domain.checkout)."""

PolicySource = Callable[[str], Awaitable[RecoveryPolicy]]
"""The policy whose steps are previewed for a shop: the one its new checkouts get (its own, or
the engine's), read when a preview is asked for."""


class SampleCoupons:
    """A coupon provider that issues nothing: each step's code is the sample of its shape."""

    async def issue(
        self, key: str, checkout_id: str, spec: Coupon, currency: str, now: datetime
    ) -> IssuedCoupon:
        return sample_coupon(spec, currency, now)

    async def redeem(self, code: str, at: datetime) -> bool:
        return False

    async def is_redeemed(self, code: str) -> bool:
        return False


@dataclass(frozen=True)
class PreviewStep:
    """An email step of the policy, and the languages its template can be read in."""

    number: int
    template: str
    languages: tuple[str, ...]


@dataclass(frozen=True)
class _Composed:
    message: Message
    checkout: AbandonedCheckout
    composer: EmailComposer


class EmailPreviews:
    def __init__(
        self,
        composer: EmailComposer,
        store: SqlStore,
        policy: PolicySource,
        smtp: SmtpConfig,
        *,
        composers: ShopComposers | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`composer`: the email step's, the deployment's; `composers`: a shop's own, for the
        shops that set any, as the worker has them (each one's coupon provider is replaced by
        SampleCoupons)."""
        self._composer = composer.with_coupons(SampleCoupons())
        self._composers = composers
        self._store = store
        self._policy = policy
        self._smtp = smtp
        self._clock = clock

    async def steps(self, *, shop_id: str) -> list[PreviewStep]:
        """The shop's policy's email steps, numbered as the policy counts them (from 1)."""
        policy = await self._policy(shop_id)
        renderer = (await self._composer_of(shop_id)).renderer
        return [
            PreviewStep(index + 1, step.template, tuple(renderer.languages("email", step.template)))
            for index, step in enumerate(policy.steps)
            if isinstance(step, EmailStep)
        ]

    async def preview(
        self, step: int, language: str, checkout_id: str | None, *, shop_id: str
    ) -> SentEmail:
        """Step `step`'s email in `language` (empty: the buyer's) for the stored checkout
        `checkout_id` (None: the sample); raises InvalidInputError for a step, language or
        checkout that is not there, or a template that fails."""
        composed = await self._compose(step, language, checkout_id, shop_id)
        return read_email(composed.message)

    async def send_test(
        self, step: int, language: str, checkout_id: str | None, to: str, *, shop_id: str
    ) -> SentEmail:
        """The preview sent to `to` (see the module's docstring); the email as sent. Raises
        InvalidInputError when refused (the buyer's or a malformed address among them), and
        ConnectionError when the relay did not take it."""
        address = _operator_address(to)
        composed = await self._compose(step, language, checkout_id, shop_id)
        buyer = composed.checkout.buyer_info.email
        if buyer is not None and buyer.casefold() == address.casefold():
            raise InvalidInputError(
                "test address", ["that is the buyer's address: a test goes to an operator only"]
            )
        sender = composed.composer.sender
        message = _as_test(composed.message, address, sender.id_domain)
        # A pool of its own, closed after the send: tests are rare, and the API process that
        # serves the dashboard has no pool to share.
        pool = SmtpPool(self._smtp)
        try:
            # Signed as the step's email is, so the operator's mailbox shows what DKIM says.
            await pool.send(message, sender.address, address, dkim=sender.dkim)
        except (aiosmtplib.SMTPException, OSError) as err:
            logger.warning("Test email of step %s not sent: %s", step, type(err).__name__)
            raise ConnectionError(f"the relay did not take the test email ({err})") from err
        finally:
            await pool.close()
        logger.info("Test email of step %s sent to an operator", step)
        return read_email(message)

    async def _compose(
        self, number: int, language: str, checkout_id: str | None, shop_id: str
    ) -> _Composed:
        policy = await self._policy(shop_id)
        step = _email_step(policy, number)
        composer = await self._composer_of(shop_id)
        renderer = composer.renderer
        languages = renderer.languages("email", step.template)
        if language and language not in languages:
            raise InvalidInputError(
                "language",
                [
                    f"template {step.template!r} has no complete {language!r} "
                    f"({', '.join(languages)})"
                ],
            )
        checkout = await self._checkout(checkout_id, shop_id)
        # The chosen language, forced (none chosen: the buyer's, as the step resolves it). A
        # buyer's tag that already reads this folder is kept: a de-AT buyer's German email keeps
        # its Austrian money.
        if (
            language
            and renderer.resolve_language("email", step.template, checkout.buyer_language)
            != language
        ):
            checkout = checkout.model_copy(update={"buyer_language": language})
        assert checkout.id is not None  # stored and sample checkouts have theirs
        workflow_id = workflow_id_for(checkout.id)
        request = EmailStepRequest(
            checkout_id=checkout.id,
            workflow_id=workflow_id,
            step_index=number - 1,
            key=step_key(workflow_id, number - 1),
            at=self._clock(),
            step=step,
            frequency_cap=policy.frequency_cap,
            time_zone=buyer_zone(checkout, policy).key,
        )
        to_address = checkout.buyer_info.email or "buyer@example.com"
        message_id = message_id_for(request.key, composer.sender.id_domain)
        try:
            message = await composer.compose(
                request, checkout, to_address, message_id, shop_id=shop_id
            )
        except ComposeError as err:
            raise InvalidInputError(f"step {number}'s email", [str(err)]) from err
        return _Composed(message, checkout, composer)

    async def _composer_of(self, shop_id: str) -> EmailComposer:
        """The shop's composer as its worker has it, with sample coupons."""
        found = None if self._composers is None else await self._composers.for_shop(shop_id)
        return self._composer if found is None else found.with_coupons(SampleCoupons())

    async def _checkout(self, checkout_id: str | None, shop_id: str) -> AbandonedCheckout:
        if not checkout_id:
            return sample_cases()[0].checkout
        # Only the operator's shop's: another shop's checkout is not there (as in the API).
        found = await self._store.get(checkout_id, with_activities=False, shop_id=shop_id)
        if found is None:
            raise InvalidInputError("checkout", [f"no checkout {checkout_id!r}"])
        return found


def _email_step(policy: RecoveryPolicy, number: int) -> EmailStep:
    steps = policy.steps
    step = steps[number - 1] if 1 <= number <= len(steps) else None
    if not isinstance(step, EmailStep):
        emails = [str(i + 1) for i, s in enumerate(steps) if isinstance(s, EmailStep)]
        raise InvalidInputError(
            "step",
            [
                f"step {number} is not an email step of policy {policy.name!r} "
                f"(its email steps: {', '.join(emails) or 'none'})"
            ],
        )
    return step


def _operator_address(to: str) -> str:
    try:
        return _ADDRESS.validate_python(to.strip())
    except ValidationError:
        raise InvalidInputError("test address", ["not a valid email address"]) from None


def _as_test(message: Message, to: str, domain: str) -> Message:
    """`message` readdressed as a test: To, Subject, Message-ID, no List-Unsubscribe."""
    subject = header_text(TEST_PREFIX + read_email(message).subject)
    for name in ("To", "Subject", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"):
        del message[name]
    message["To"] = to
    # As build_message writes a subject: encoded words only when it is not plain ASCII.
    message["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
    # A key no step has (theirs are `<workflow>/step-<n>`), so never a step's Message-ID.
    message["Message-ID"] = message_id_for(f"test-send/{uuid.uuid4().hex}", domain)
    return message
