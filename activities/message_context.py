"""What templates may show of a checkout: a plain dict built from the validated model.

Money and dates are formatted here, with Babel's CLDR data, for the locale of the message, so that
templates only print strings. Amounts stay `Decimal` from the checkout's decimal strings to the
formatted text: a float on the way would turn 2.675 into 2.67499999... and round it down.
"""

from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency

from domain.checkout import AbandonedCheckout

FALLBACK_LOCALE = "en"


@lru_cache(maxsize=256)
def babel_locale(tag: str) -> Locale:
    """The Babel locale for a language tag (`de-AT`, `de_AT`, `DE-at`), degrading gracefully.

    `buyerLanguage` is whatever the shop sent, so an unknown region or a malformed tag must not
    stop an email: `xx-YY` tries `xx`, then English. Cached because parsing loads CLDR data.
    """
    subtags = [s for s in tag.strip().replace("_", "-").split("-") if s]
    for n in range(len(subtags), 0, -1):
        try:
            return Locale.parse("_".join(subtags[:n]))
        except (UnknownLocaleError, ValueError, TypeError):
            continue
    return Locale.parse(FALLBACK_LOCALE)


def formatting_locale(requested: str, language: str) -> str:
    """The locale to format a message's money and dates in, written in template `language`.

    The buyer's own tag when it is a variant of that language (an Austrian buyer, `de-AT`, reading
    the German email sees `€ 89,90`); else the template's language, so that a buyer whose language
    has no templates (`it`, given the English email) does not get Italian numbers in English text.
    """
    base = requested.strip().replace("_", "-").split("-")[0].lower()
    if base and base == language.replace("_", "-").split("-")[0].lower():
        return requested
    return language


def format_money(amount: str, currency: str, locale: str) -> str:
    """`amount` (a decimal string such as "89.90") in `currency` as `locale` writes it.

    The currency's own number of decimals applies (JPY none, EUR two), as CLDR says.
    """
    return format_currency(Decimal(amount), currency, locale=babel_locale(locale))


def format_datetime_local(dt: datetime, time_zone: str, locale: str) -> str:
    """An aware moment as the wall-clock date and time in `time_zone`, medium form for `locale`."""
    return format_datetime(dt, "medium", tzinfo=ZoneInfo(time_zone), locale=babel_locale(locale))


def format_date_local(dt: datetime, time_zone: str, locale: str) -> str:
    """The calendar date of an aware moment in `time_zone`, long form (`2. März 2025`)."""
    # Converted first: 23:30 UTC is already the next day in Berlin, the day the buyer saw.
    local_day = dt.astimezone(ZoneInfo(time_zone)).date()
    return format_date(local_day, format="long", locale=babel_locale(locale))


def checkout_context(
    checkout: AbandonedCheckout,
    shop_name: str,
    *,
    locale: str = FALLBACK_LOCALE,
    time_zone: str = "UTC",
    **extra: object,
) -> dict[str, object]:
    """The variables a template sees. `extra` (e.g. `coupon`, `unsubscribe_url`) is added as is.

    Pure and quick: no I/O, so activities can rebuild it on every attempt.
    """
    currency = checkout.currency
    contact = checkout.contact_details
    created = checkout.created_date
    context: dict[str, object] = {
        "shop_name": shop_name,
        "checkout_id": checkout.id,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "buyer_name": " ".join(n for n in (contact.first_name, contact.last_name) if n) or None,
        "checkout_url": checkout.checkout_url,
        "currency": currency,
        "total": format_money(checkout.total_price.amount, currency, locale),
        "subtotal": (
            format_money(checkout.subtotal_price.amount, currency, locale)
            if checkout.subtotal_price
            else None
        ),
        "abandoned_date": (
            format_date_local(created, time_zone, locale) if created is not None else None
        ),
        "items_count": sum(item.quantity for item in checkout.line_items),
        "line_items": [
            {
                "name": item.name,
                "quantity": item.quantity,
                "price": format_money(item.price.amount, currency, locale),
                "image_url": item.image_url,
                "url": item.url,
            }
            for item in checkout.line_items
        ],
    }
    context.update(extra)
    return context
