"""What an email template may show of a coupon, formatted for the buyer's locale and zone."""

from decimal import Decimal

from babel.numbers import format_percent

from activities.message_context import babel_locale, format_datetime_local, format_money
from domain.coupons import IssuedCoupon


def coupon_context(coupon: IssuedCoupon, locale: str, time_zone: str) -> dict[str, str]:
    if coupon.percent_off is not None:
        discount = format_percent(Decimal(coupon.percent_off) / 100, locale=babel_locale(locale))
    else:
        assert coupon.amount_off is not None
        discount = format_money(coupon.amount_off, coupon.currency, locale)
    return {
        "code": coupon.code,
        "discount": discount,
        "expires": format_datetime_local(coupon.expires, time_zone, locale),
    }
