"""Rendering every template a policy uses before a buyer can meet it.

A template that fails at send time costs a buyer's email (recorded as `template_error`). So when a
policy is checked (`policy check`, and every worker start) each step's templates are rendered, in
every language folder shipped for them, with the context the step's activity gives them, for a
sample checkout and for the shapes of buyer data that break templates in practice: no names, no
line items, very long values. Email steps with a coupon get one in every case, as at send time.

The shop's own templates (CHECKOUT_RECOVERY_TEMPLATES_DIR) are rendered that way wherever the
policy uses them; every other file of theirs is parsed, and a file that would never be used (a
misspelt part, a language the folders leave incomplete) is a problem too, since the merchant meant
it to be used.
"""

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from activities.coupon_context import coupon_context
from activities.message_context import checkout_context
from activities.rendering import PARTS_BY_KIND, SubjectLine, TemplateRenderer, TemplateRenderError
from activities.sms import render_sms
from activities.template_source import NotATemplateNameError, template_path
from domain.checkout import AbandonedCheckout, ContactDetails, parse_checkout
from domain.coupons import IssuedCoupon
from domain.policy import Coupon, EmailStep, RecoveryPolicy, SmsStep, Step
from domain.sms import MAX_SEGMENTS, SmsLength, sms_length

SHOP_NAME = "Sample Shop"
SAMPLE_AT = datetime(2026, 3, 28, 20, 30, tzinfo=UTC)
UNSUBSCRIBE_URL = "https://shop.example/unsubscribe/sample?token=sample"

_FULL_CHECKOUT: dict[str, Any] = {
    "id": "sample-checkout",
    "checkoutId": "sample-checkout",
    "createdDate": SAMPLE_AT.isoformat(),
    "buyerInfo": {"visitorId": "sample-visitor", "email": "buyer@example.com"},
    "buyerLanguage": "en",
    "buyerTimeZone": "Europe/Berlin",
    "contactDetails": {
        "firstName": "Ada",
        "lastName": "Lovelace",
        "phone": "+44 20 7946 0000",
        "company": "Analytical Engines Ltd",
    },
    "currency": "EUR",
    "subtotalPrice": {"amount": "84.00"},
    "totalPrice": {"amount": "89.90"},
    "lineItems": [
        {
            "id": "item-1",
            "name": "Linen shirt",
            "quantity": 2,
            "price": {"amount": "30.00"},
            "imageUrl": "https://shop.example/img/shirt.jpg",
            "url": "https://shop.example/p/shirt",
        },
        {"name": "Canvas tote", "quantity": 1, "price": {"amount": "24.00"}},
    ],
    "checkoutUrl": "https://shop.example/checkout/sample",
}


@dataclass(frozen=True)
class SampleCase:
    """A checkout to render with, and how a problem report names it."""

    label: str
    checkout: AbandonedCheckout


def sample_cases(sample: AbandonedCheckout | None = None) -> list[SampleCase]:
    """`sample` (or a complete built-in checkout) and the edge cases every template must survive."""
    full = parse_checkout(_FULL_CHECKOUT)
    long_name = "Maximiliana-Theodora " * 12
    many_items = [
        {
            "id": f"item-{n}",
            "name": f"Item {n} " + "with a very long descriptive name " * 8,
            "quantity": 999,
            "price": {"amount": "99999.99"},
            "imageUrl": f"https://shop.example/img/{n}.jpg",
            "url": f"https://shop.example/p/{n}",
        }
        for n in range(120)
    ]
    long_values = parse_checkout(
        {
            **_FULL_CHECKOUT,
            "contactDetails": {
                "firstName": long_name.strip(),
                "lastName": ("von Hohenzollern-Sigmaringen " * 10).strip(),
                "company": "A" * 300,
            },
            "subtotalPrice": {"amount": "999999999.99"},
            "totalPrice": {"amount": "999999999.99"},
            "lineItems": many_items,
            "checkoutUrl": "https://shop.example/checkout/" + "x" * 1500,
        }
    )
    no_items = full.model_copy(
        update={"line_items": [], "subtotal_price": None, "created_date": None}
    )
    return [
        SampleCase("the sample checkout", sample if sample is not None else full),
        SampleCase(
            "a checkout without names",
            full.model_copy(update={"contact_details": ContactDetails()}),
        ),
        SampleCase("a checkout without line items", no_items),
        SampleCase("a checkout with very long values", long_values),
    ]


def template_problems(
    policy: RecoveryPolicy, renderer: TemplateRenderer, sample: AbandonedCheckout | None = None
) -> list[str]:
    """One line per failing template part, language and error, naming the cases it fails for.

    Steps whose template set lacks parts are left to the caller, which reports what is missing.
    """
    cases = sample_cases(sample)
    problems: list[str] = []
    for index, step in enumerate(policy.steps):
        if renderer.missing_parts(step.action, step.template):
            continue
        for language in renderer.languages(step.action, step.template):
            failures: dict[str, list[str]] = {}
            for case in cases:
                for error in _render_errors(renderer, step, language, case.checkout):
                    failures.setdefault(str(error), []).append(case.label)
            problems.extend(
                f"step {index + 1} ({step.action}): template {step.template!r}, language "
                f"{language}: {message} (with {_cases_named(labels, len(cases))})"
                for message, labels in failures.items()
            )
    problems += variant_problems(policy, renderer, cases)
    problems += sms_length_problems(policy, renderer, cases[0].checkout)
    used = {(step.action, step.template) for step in policy.steps}
    return problems + override_problems(renderer, used, problems)


def variant_problems(
    policy: RecoveryPolicy, renderer: TemplateRenderer, cases: list[SampleCase]
) -> list[str]:
    """The A/B variants' templates and subject lines, checked as the steps' own are: each
    variant is the email its checkouts get (another template, another subject, or both)."""
    problems: list[str] = []
    for index, step in enumerate(policy.steps):
        if not isinstance(step, EmailStep):
            continue
        for variant in step.variants or ():
            where = f"step {index + 1} (email), variant {variant.name}"
            template = variant.template or step.template
            missing = renderer.missing_parts("email", template)
            if missing:
                problems.append(f"{where}: template {template!r} lacks {', '.join(missing)}")
                continue
            version = step.model_copy(update={"template": template, "variants": None})
            subject = None if variant.subject is None else SubjectLine("subject", variant.subject)
            for language in renderer.languages("email", template):
                failures: dict[str, list[str]] = {}
                for case in cases:
                    context = _context(version, language, case.checkout)
                    try:
                        if variant.template is None and subject is not None:
                            # The rest is the step's own template, checked above.
                            renderer.render_subject_line(subject, context)
                        else:
                            renderer.render_email_in(template, language, context, subject)
                    except TemplateRenderError as err:
                        failures.setdefault(str(err), []).append(case.label)
                problems.extend(
                    f"{where}: template {template!r}, language {language}: {message} "
                    f"(with {_cases_named(labels, len(cases))})"
                    for message, labels in failures.items()
                )
    return problems


def sms_lengths(
    policy: RecoveryPolicy, renderer: TemplateRenderer, sample: AbandonedCheckout
) -> dict[int, SmsLength]:
    """Step number -> the length of the text each SMS step sends `sample` (its language, as
    the step renders it); steps whose template fails are left to template_problems."""
    lengths: dict[int, SmsLength] = {}
    for index, step in enumerate(policy.steps):
        if not isinstance(step, SmsStep) or renderer.missing_parts("sms", step.template):
            continue
        zone = sample.buyer_time_zone or "UTC"
        try:
            text = render_sms(renderer, step.template, sample, SHOP_NAME, time_zone=zone)
        except TemplateRenderError:
            continue
        lengths[index + 1] = sms_length(text)
    return lengths


def sms_length_problems(
    policy: RecoveryPolicy, renderer: TemplateRenderer, sample: AbandonedCheckout
) -> list[str]:
    """A text longer than MAX_SEGMENTS for the sample checkout is an error: carriers drop
    or cut long concatenated texts, and each segment is billed."""
    return [
        f"step {number} (sms): the text for the sample checkout is {length.characters} "
        f"characters ({length.encoding}), {length.segments} segments; at most {MAX_SEGMENTS}"
        for number, length in sms_lengths(policy, renderer, sample).items()
        if length.too_long
    ]


def override_problems(
    renderer: TemplateRenderer,
    rendered: Collection[tuple[str, str]] = (),
    reported: Collection[str] = (),
) -> list[str]:
    """One line per file of the shop's own templates that is misplaced or does not parse.

    `rendered`: the (kind, name) template sets whose files were rendered already, so are not
    parsed again; a parse error already in `reported` (a broken layout, found through the step
    that extends it) is not said twice.
    """
    source = renderer.source
    problems: list[str] = []
    for name in source.override_files():
        misplaced = _misplaced(renderer, name)
        if misplaced is not None:
            problems.append(f"template override {source.shown_relative(name)}: {misplaced}")
            continue
        kind, template = name.split("/")[:2]
        if (kind, template) in rendered:
            continue
        try:
            renderer.compile(name)
        except TemplateRenderError as err:
            if not any(str(err) in line for line in reported):
                problems.append(f"template override {err}")
    return problems


def _misplaced(renderer: TemplateRenderer, name: str) -> str | None:
    """Why a file of the shop's folder would never be used (None: it would)."""
    segments = name.split("/")
    try:
        template_path(*segments)
    except NotATemplateNameError:
        return "not a template file name (letters, digits, '_', '-' and '.', no leading dot)"
    kind = segments[0]
    if kind not in PARTS_BY_KIND:
        return f"not under a template kind ({', '.join(PARTS_BY_KIND)})"
    if len(segments) >= 3 and segments[1].startswith("_"):
        return None  # a layout or an included file: used by the templates that name it
    if len(segments) != 4:
        return f"not at {kind}/<template>/<language>/<part>"
    return _unused_part(renderer, kind, *segments[1:])


def _unused_part(
    renderer: TemplateRenderer, kind: str, template: str, language: str, part: str
) -> str | None:
    parts = PARTS_BY_KIND[kind]
    if part not in parts:
        return f"not a part of {kind} templates ({', '.join(parts)})"
    if language not in renderer.languages(kind, template):
        missing = [p for p in parts if not renderer.source.has(f"{kind}/{template}/{language}/{p}")]
        return (
            f"{kind}/{template}/{language} lacks {', '.join(missing)} here and in the shipped "
            "templates, so this language is never used"
        )
    return None


def _cases_named(labels: list[str], total: int) -> str:
    return "every sample checkout" if len(labels) == total else ", ".join(labels)


def _render_errors(
    renderer: TemplateRenderer, step: Step, language: str, checkout: AbandonedCheckout
) -> Iterator[TemplateRenderError]:
    """Each part rendered on its own, so that one report names every broken part."""
    context = _context(step, language, checkout)
    for part in PARTS_BY_KIND[step.action]:
        try:
            renderer.render_in(step.action, step.template, part, language, context)
        except TemplateRenderError as err:
            yield err


def _context(step: Step, language: str, checkout: AbandonedCheckout) -> dict[str, object]:
    """What the step's activity gives its templates (see activities/email.py and friends)."""
    time_zone = checkout.buyer_time_zone or "UTC"
    context = checkout_context(checkout, SHOP_NAME, locale=language, time_zone=time_zone)
    if isinstance(step, EmailStep):
        context["unsubscribe_url"] = UNSUBSCRIBE_URL
        if step.coupon is not None:
            coupon = sample_coupon(step.coupon, checkout.currency)
            context["coupon"] = coupon_context(coupon, language, time_zone)
    return context


def sample_coupon(spec: Coupon, currency: str, issued_at: datetime = SAMPLE_AT) -> IssuedCoupon:
    """A code of the step's shape that no provider issued: for checks and previews only."""
    return IssuedCoupon(
        code=f"{spec.prefix}-7KQ2M-XR9PT" if spec.prefix else "7KQ2M-XR9PT",
        expires=issued_at + spec.valid_for,
        percent_off=spec.percent_off,
        amount_off=spec.amount_off,
        currency=currency,
    )
