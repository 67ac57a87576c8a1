"""Recovery emails in the buyer's language, with money and dates as that language writes them.

Rendered through the real templates under templates/ with the real context builder, as the email
activity does; the strings asserted are what a buyer would read.
"""

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from babel.numbers import format_currency

from activities.message_context import (
    checkout_context,
    format_datetime_local,
    format_money,
    formatting_locale,
)
from activities.rendering import RenderedEmail, TemplateRenderer
from domain.checkout import AbandonedCheckout
from tests.support import sample_checkout

# 23:30 UTC on 1 March is already 2 March in Berlin: the date a German buyer saw on the clock.
ABANDONED = "2025-03-01T23:30:00Z"
ZONE = "Europe/Berlin"
NBSP = "\u00a0"
NNBSP = "\u202f"
EN_DASH = "\u2013"
APOSTROPHE = "\u2019"  # the typographic apostrophe French shops print

SHIPPED = ["en", "de", "fr", "es"]
TEMPLATES = ["reminder", "last_chance"]

# What each language's emails must say: words of the subject, the total, the abandonment date.
EXPECTED: dict[str, dict[str, str]] = {
    "en": {
        "reminder": "Ada, you left something in your cart at Test Shop",
        "last_chance": "Last chance: your cart at Test Shop is about to expire",
        "total": "€89.90",
        "item": "€30.00",
        "date": "March 2, 2025",
        "greeting": "Hi Ada,",
    },
    "de": {
        "reminder": "Ada, Sie haben etwas in Ihrem Warenkorb bei Test Shop vergessen",
        "last_chance": "Letzte Erinnerung: Ihr Warenkorb bei Test Shop verfällt bald",
        "total": f"89,90{NBSP}€",
        "item": f"30,00{NBSP}€",
        "date": "2. März 2025",
        "greeting": "Hallo Ada,",
    },
    "fr": {
        "reminder": "Ada, vous avez oublié quelque chose dans votre panier chez Test Shop",
        "last_chance": f"Dernière chance{NBSP}: votre panier chez Test Shop va bientôt expirer",
        "total": f"89,90{NBSP}€",
        "item": f"30,00{NBSP}€",
        "date": "2 mars 2025",
        "greeting": "Bonjour Ada,",
    },
    "es": {
        "reminder": "Ada, te has dejado algo en tu carrito de Test Shop",
        "last_chance": "Última oportunidad: tu carrito de Test Shop está a punto de caducar",
        "total": f"89,90{NBSP}€",
        "item": f"30,00{NBSP}€",
        "date": "2 de marzo de 2025",
        "greeting": "Hola Ada,",
    },
}

COUPON = {"code": "COMEBACK-7Q2X", "discount": "10 %", "expires": "9 March 2025"}
UNSUBSCRIBE_URL = "https://shop.example/unsubscribe?token=abc.def"


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer()


def _checkout(language: str = "en", **overrides: Any) -> AbandonedCheckout:
    return sample_checkout(buyerLanguage=language, createdDate=ABANDONED, **overrides)


def _email(
    renderer: TemplateRenderer,
    name: str,
    checkout: AbandonedCheckout,
    **extra: object,
) -> RenderedEmail:
    """The email as the email activity builds it: formatted for the language actually used."""
    language = renderer.resolve_language("email", name, checkout.buyer_language)
    context = checkout_context(
        checkout,
        "Test Shop",
        locale=formatting_locale(checkout.buyer_language, language),
        time_zone=ZONE,
        **extra,
    )
    return renderer.render_email(name, checkout.buyer_language, context)


@pytest.mark.parametrize("name", TEMPLATES)
@pytest.mark.parametrize("language", SHIPPED)
def test_email_is_written_in_the_buyers_language(
    renderer: TemplateRenderer, language: str, name: str
) -> None:
    expected = EXPECTED[language]
    email = _email(renderer, name, _checkout(language))

    assert email.subject == expected[name]
    for body in (email.text, email.html):
        assert expected["greeting"] in body
        assert expected["total"] in body
        assert expected["item"] in body
        assert expected["date"] in body
    assert f'<html lang="{language}">' in email.html


@pytest.mark.parametrize("language", SHIPPED)
def test_money_is_exactly_what_babel_writes_for_the_locale(language: str) -> None:
    context = checkout_context(_checkout(language), "Test Shop", locale=language)

    assert context["total"] == format_currency(Decimal("89.90"), "EUR", locale=language)
    assert context["total"] == EXPECTED[language]["total"]
    assert context["subtotal"] is None
    line_items = context["line_items"]
    assert isinstance(line_items, list)
    assert [item["price"] for item in line_items] == [
        EXPECTED[language]["item"],
        format_currency(Decimal("24.00"), "EUR", locale=language),
    ]


def test_french_groups_thousands_with_a_narrow_no_break_space() -> None:
    assert format_money("1234.50", "EUR", "fr") == f"1{NNBSP}234,50{NBSP}€"


def test_money_never_goes_through_float() -> None:
    # float("2.675") is 2.67499999..., which would round down; the decimal string rounds half-even.
    assert format_money("2.675", "EUR", "en") == "€2.68"
    # Beyond float's 15-17 significant digits, nothing is lost either.
    assert format_money("12345678901234567.89", "USD", "en") == "$12,345,678,901,234,567.89"
    # The currency's own decimals: yen have none.
    assert format_money("1500", "JPY", "en") == "¥1,500"


def test_abandoned_date_is_the_buyers_calendar_day() -> None:
    checkout = _checkout()
    assert checkout_context(checkout, "S", locale="de", time_zone=ZONE)["abandoned_date"] == (
        "2. März 2025"
    )
    # The same moment is still 1 March in UTC, and in New York.
    assert checkout_context(checkout, "S", locale="de")["abandoned_date"] == "1. März 2025"
    assert (
        checkout_context(checkout, "S", locale="en", time_zone="America/New_York")["abandoned_date"]
        == "March 1, 2025"
    )


def test_no_created_date_means_no_date_sentence(renderer: TemplateRenderer) -> None:
    checkout = sample_checkout(buyerLanguage="de")
    context = checkout_context(checkout, "Test Shop", locale="de")
    assert context["abandoned_date"] is None

    text = renderer.render_email("reminder", "de", context).text
    assert "Sie haben 3 Artikel in Ihrem Warenkorb bei Test Shop liegen lassen." in text


def test_datetime_is_local_wall_clock_time_across_daylight_saving() -> None:
    # Berlin moved from CET to CEST at 01:00 UTC on 30 March 2025.
    before = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)
    after = datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    assert format_datetime_local(before, ZONE, "de") == "30.03.2025, 01:30:00"
    assert format_datetime_local(after, ZONE, "de") == "30.03.2025, 03:30:00"
    assert format_datetime_local(after, ZONE, "en") == f"Mar 30, 2025, 3:30:00{NNBSP}AM"
    assert format_datetime_local(after, ZONE, "fr") == "30 mars 2025, 03:30:00"


def test_checkout_context_is_backward_compatible() -> None:
    """Callers that pass only (checkout, shop_name) get English money, UTC dates, no extras."""
    context = checkout_context(_checkout("de"), "Test Shop")
    assert context["total"] == "€89.90"
    assert context["abandoned_date"] == "March 1, 2025"
    assert "coupon" not in context and "unsubscribe_url" not in context


def test_unsupported_language_gets_the_shops_default(renderer: TemplateRenderer) -> None:
    checkout = _checkout("it")
    email = _email(renderer, "reminder", checkout)

    assert renderer.resolve_language("email", "reminder", "it") == "en"
    assert email.subject == EXPECTED["en"]["reminder"]
    # English text gets English numbers, not Italian ones.
    assert "Total: €89.90" in email.text


def test_shop_default_language_is_the_fallback() -> None:
    german_shop = TemplateRenderer(default_language="de")
    assert german_shop.resolve_language("email", "reminder", "it") == "de"
    assert german_shop.resolve_language("email", "reminder", "en") == "en"


@pytest.mark.parametrize("tag", ["de-AT", "de_AT", "de-DE", "DE", "de_de", " de-CH "])
def test_regional_tag_gets_its_base_language(renderer: TemplateRenderer, tag: str) -> None:
    assert renderer.resolve_language("email", "reminder", tag) == "de"
    email = _email(renderer, "reminder", _checkout(tag))
    assert email.subject == EXPECTED["de"]["reminder"]


def test_austrian_buyer_reads_austrian_money(renderer: TemplateRenderer) -> None:
    email = _email(renderer, "reminder", _checkout("de-AT"))
    assert f"Gesamtsumme: €{NBSP}89,90" in email.text
    assert formatting_locale("de-AT", "de") == "de-AT"
    assert formatting_locale("it", "en") == "en"


def test_exact_regional_folder_wins_over_the_base_language(tmp_path: Path) -> None:
    for lang in ("en", "pt", "pt_BR"):
        folder = tmp_path / "email" / "reminder" / lang
        folder.mkdir(parents=True)
        for part, text in (("subject.txt", lang), ("body.html", lang), ("body.txt", lang)):
            (folder / part).write_text(text)
    renderer = TemplateRenderer(directory=tmp_path)

    assert renderer.resolve_language("email", "reminder", "pt-BR") == "pt_BR"
    assert renderer.resolve_language("email", "reminder", "PT_br") == "pt_BR"
    assert renderer.resolve_language("email", "reminder", "pt-PT") == "pt"
    assert renderer.render_email("reminder", "pt-br", {}).subject == "pt_BR"


def test_incomplete_translation_is_not_used(tmp_path: Path) -> None:
    """A language folder missing a part would mix languages in one email: it is skipped whole."""
    for lang, parts in (("en", ("subject.txt", "body.html", "body.txt")), ("nl", ("subject.txt",))):
        folder = tmp_path / "email" / "reminder" / lang
        folder.mkdir(parents=True)
        for part in parts:
            (folder / part).write_text(f"{lang} {part}")
    renderer = TemplateRenderer(directory=tmp_path)

    assert renderer.resolve_language("email", "reminder", "nl") == "en"
    email = renderer.render_email("reminder", "nl", {})
    assert (email.subject, email.text) == ("en subject.txt", "en body.txt")


@pytest.mark.parametrize("name", TEMPLATES)
@pytest.mark.parametrize("language", SHIPPED)
def test_coupon_paragraph_only_when_a_coupon_is_given(
    renderer: TemplateRenderer, language: str, name: str
) -> None:
    checkout = _checkout(language)
    without = _email(renderer, name, checkout)
    with_none = _email(renderer, name, checkout, coupon=None)
    given = _email(renderer, name, checkout, coupon=COUPON)

    for email in (without, with_none):
        assert COUPON["code"] not in email.text + email.html
    for body in (given.text, given.html):
        assert COUPON["code"] in body
        assert COUPON["discount"] in body
        assert COUPON["expires"] in body
    sentence = {
        "en": f"Use code {COUPON['code']} for 10 % off, valid until 9 March 2025.",
        "de": f"Mit dem Code {COUPON['code']} erhalten Sie 10 % Rabatt {EN_DASH} gültig bis 9 March 2025.",
        "fr": f"Profitez de 10 % de réduction avec le code {COUPON['code']}, valable jusqu{APOSTROPHE}au 9 March 2025.",
        "es": f"Usa el código {COUPON['code']} para obtener 10 % de descuento, válido hasta el 9 March 2025.",
    }[language]
    assert sentence in given.text


def test_coupon_without_expiry_says_no_date(renderer: TemplateRenderer) -> None:
    coupon = {"code": "FIVEOFF", "discount": "5,00 €"}
    email = _email(renderer, "reminder", _checkout("de"), coupon=coupon)
    assert "Mit dem Code FIVEOFF erhalten Sie 5,00 € Rabatt." in email.text
    assert "gültig bis" not in email.text + email.html


@pytest.mark.parametrize("name", TEMPLATES)
@pytest.mark.parametrize("language", SHIPPED)
def test_unsubscribe_link_only_when_a_url_is_given(
    renderer: TemplateRenderer, language: str, name: str
) -> None:
    label = {
        "en": "Unsubscribe from cart reminders",
        "de": "Von Warenkorb-Erinnerungen abmelden",
        "fr": "Se désabonner des rappels de panier",
        "es": "Darse de baja de los recordatorios de carrito",
    }[language]
    checkout = _checkout(language)
    without = _email(renderer, name, checkout)
    given = _email(renderer, name, checkout, unsubscribe_url=UNSUBSCRIBE_URL)

    assert label not in without.text + without.html
    assert "unsubscribe" not in without.text + without.html
    # The HTML escapes nothing in this URL, but would escape a '&' to '&amp;' as it should.
    assert f'<a href="{UNSUBSCRIBE_URL}" style="color:#7b8794;">{label}</a>' in given.html
    colon = f"{NBSP}:" if language == "fr" else ":"
    assert given.text.rstrip().endswith(f"{label}{colon} {UNSUBSCRIBE_URL}")


def test_unsubscribe_url_is_escaped_in_html(renderer: TemplateRenderer) -> None:
    url = "https://shop.example/u?a=1&b=2"
    email = _email(renderer, "reminder", _checkout(), unsubscribe_url=url)
    assert 'href="https://shop.example/u?a=1&amp;b=2"' in email.html


def test_staff_messages_stay_english_with_the_new_context(renderer: TemplateRenderer) -> None:
    checkout = _checkout("de")
    context = checkout_context(
        checkout,
        "Test Shop",
        locale="en",
        time_zone=ZONE,
        coupon=COUPON,
        unsubscribe_url=UNSUBSCRIBE_URL,
    )
    context["checkout_id"] = "c-1"

    alert = renderer.render_line("notification", "staff_alert", "de", context)
    task = renderer.render_line("task", "follow_up", renderer.default_language, context)

    assert renderer.resolve_language("notification", "staff_alert", "de") == "en"
    assert alert == "Abandoned checkout c-1 by Ada Lovelace: 3 items, €89.90, still not recovered."
    assert task == "Follow up with Ada Lovelace about an abandoned cart of €89.90"
