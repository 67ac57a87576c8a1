"""The AbandonedCheckout shape of the reference eCommerce API, validated.

Money amounts are decimal strings (never floats) so that no rounding happens between the shop and
the email; dates are timezone-aware. Pure module: safe to import from workflow code.
"""

from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    EmailStr,
    Field,
    ValidationError,
    model_validator,
)

from domain.activity import Activity
from domain.base import CamelModel
from domain.currencies import ISO_4217_CODES
from domain.errors import InvalidInputError, describe_validation_error


def _decimal_string(value: str) -> str:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal amount such as '12.50'") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite amount")
    return value


def _currency_code(value: str) -> str:
    if value not in ISO_4217_CODES:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code such as 'EUR' or 'USD'")
    return value


def _web_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone such as 'Europe/Berlin'") from None
    return value


DecimalString = Annotated[str, AfterValidator(_decimal_string)]
TimeZoneName = Annotated[str, AfterValidator(_time_zone)]
CurrencyCode = Annotated[str, AfterValidator(_currency_code)]
WebUrl = Annotated[str, AfterValidator(_web_url)]


class CheckoutStatus(StrEnum):
    ABANDONED = "ABANDONED"
    RECOVERED = "RECOVERED"


class Price(CamelModel):
    amount: DecimalString
    converted_amount: DecimalString | None = None
    formatted_amount: str | None = None
    formatted_converted_amount: str | None = None

    def display(self, currency: str) -> str:
        """What a buyer reads: the shop's own formatting when it sent one."""
        return self.formatted_amount or f"{self.amount} {currency}"


class BuyerInfo(CamelModel):
    contact_id: str | None = None
    email: EmailStr | None = None
    visitor_id: str | None = None
    member_id: str | None = None
    user_id: str | None = None

    @model_validator(mode="after")
    def _exactly_one_identity(self) -> Self:
        given = [n for n in ("visitorId", "memberId", "userId") if getattr(self, _snake(n))]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"needs exactly one of visitorId, memberId, userId (found: {found})")
        return self


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


class ContactDetails(CamelModel):
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    company: str | None = None


class LineItem(CamelModel):
    id: str | None = None
    name: str = Field(min_length=1)
    quantity: int = Field(ge=1)
    price: Price
    image_url: WebUrl | None = None
    url: WebUrl | None = None


class RecoveryAttribution(CamelModel):
    """How a recovery happened (engine-owned; our extension of the reference)."""

    kind: Literal["link", "assisted", "organic"]
    """link: the buyer came back through a recovery link; assisted: recovered within the policy's
    attribution window after an email; organic: neither."""
    step: int | None = None
    """The step that touched the buyer last (the clicked link's, or the last email's)."""
    recovered_amount: DecimalString | None = None
    """The checkout's total at recovery, in its currency."""


class AbandonedCheckout(CamelModel):
    """One abandoned checkout: what the shop reported plus the engine's record of what it did."""

    id: str | None = None
    created_date: AwareDatetime | None = None
    updated_date: AwareDatetime | None = None
    checkout_id: str | None = None
    cart_id: str | None = None
    status: CheckoutStatus = CheckoutStatus.ABANDONED
    checkout_recovered_date: AwareDatetime | None = None
    order_id: str | None = None
    buyer_info: BuyerInfo
    buyer_language: str = "en"
    contact_details: ContactDetails = Field(default_factory=ContactDetails)
    currency: CurrencyCode
    conversion_currency: CurrencyCode | None = None
    subtotal_price: Price | None = None
    total_price: Price
    line_items: list[LineItem] = Field(default_factory=list)
    checkout_url: WebUrl
    buyer_time_zone: TimeZoneName | None = None
    """Our extension: the buyer's IANA zone, for send windows; the policy's zone when absent."""
    marketing_consent: bool | None = None
    """Our extension: whether the buyer agreed to marketing email (absent: not known, so no)."""
    recovery_attribution: RecoveryAttribution | None = None
    activities: list[Activity] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checkout_or_cart(self) -> Self:
        if not (self.checkout_id or self.cart_id):
            raise ValueError("needs checkoutId or cartId (both are empty)")
        return self

    @property
    def abandoned_at(self) -> datetime | None:
        """The moment the policy's delays count from."""
        return self.created_date


def parse_checkout(data: object) -> AbandonedCheckout:
    """Validate a reported checkout; raise InvalidInputError naming every bad field."""
    try:
        return AbandonedCheckout.model_validate(data)
    except ValidationError as err:
        raise InvalidInputError("abandoned checkout", describe_validation_error(err)) from None
