"""The AbandonedCheckout shape of the reference eCommerce API, validated.

Money amounts are decimal strings (never floats) so that no rounding happens between the shop and
the email; dates are timezone-aware. Pure module: safe to import from workflow code.
"""

import unicodedata
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

from domain.activity import Activity, NotSentReason
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


class StopReason(StrEnum):
    """Why a checkout still ABANDONED takes no further step (the store's `stopReason`)."""

    CANCELLED = "cancelled"
    """An operator or service cancelled its flow."""
    BUYER_PURCHASED = "buyer_purchased"
    """The same buyer completed a purchase through another checkout, or the shop reported an
    order of the buyer's."""
    WINDOW_ELAPSED = "window_elapsed"
    """The reconciler found it without a flow after its policy's window had passed."""


class FlowState(StrEnum):
    """Whether Temporal has confirmed every change the store holds for the checkout's flow."""

    PENDING = "PENDING"
    """A start or signal is written and waits for Temporal (down, or the hand-off is behind)."""
    STARTED = "STARTED"
    """Temporal confirmed the flow's start and every signal written for it."""


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


def _no_control_characters(value: str) -> str:
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise ValueError("must not contain control characters")
    return value


IdentityValue = Annotated[
    str, Field(min_length=1, max_length=200), AfterValidator(_no_control_characters)
]
"""An identity given to look checkouts up by: compared with stored columns, so bounded like
them and free of the characters PostgreSQL refuses (NUL)."""


class BuyerIdentity(CamelModel):
    """Who a purchase belongs to, for stopping the buyer's flows: any of the identities that
    name a person (a visitorId names a browser, so it is not one of them)."""

    email: EmailStr | None = None
    contact_id: IdentityValue | None = None
    member_id: IdentityValue | None = None
    user_id: IdentityValue | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Self:
        if not (self.email or self.contact_id or self.member_id or self.user_id):
            raise ValueError("needs at least one of email, contactId, memberId, userId")
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
    stop_reason: StopReason | None = None
    """Engine-owned, our extension: why a checkout still ABANDONED takes no further step."""
    flow_state: FlowState | None = None
    """Engine-owned, our extension: PENDING until Temporal confirmed every change for the flow."""
    activities: list[Activity] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checkout_or_cart(self) -> Self:
        if not (self.checkout_id or self.cart_id):
            raise ValueError("needs checkoutId or cartId (both are empty)")
        return self

    def halted(self) -> NotSentReason | None:
        """Why no step may touch the buyer any more, as a step records it; None while the flow
        may go on. Every step asks this of the store's record right before its side effect."""
        if self.status is CheckoutStatus.RECOVERED:
            return NotSentReason.RECOVERED
        if self.stop_reason is StopReason.BUYER_PURCHASED:
            return NotSentReason.BUYER_PURCHASED
        if self.stop_reason is not None:
            return NotSentReason.CANCELLED
        return None

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
