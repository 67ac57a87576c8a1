"""The AbandonedCheckout shape of the reference eCommerce API, validated.

Money amounts are decimal strings (never floats) so that no rounding happens between the shop and
the email; dates are timezone-aware. Pure module: safe to import from workflow code.

The input contract of every field is defined here, once, as the annotated types below: whatever
reads a checkout (the HTTP API, `checkout-recovery start`, `update` and `import`) and whatever
compares a value with a stored one (queries, lookups by identity, path ids) applies the same
bounds, so that SQLite and PostgreSQL see the same values. Text that is stored or compared is
bounded like the column that keeps it and free of control characters (PostgreSQL refuses NUL, and
nothing a shop sends needs the others); a URL can never carry CR or LF into a redirect header.
"""

import re
from datetime import UTC, datetime
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

from domain.activity import ActivityEntry, ActivityType, NotSentReason
from domain.base import CamelModel
from domain.currencies import ISO_4217_CODES
from domain.errors import InvalidInputError, describe_validation_error

# --- limits ------------------------------------------------------------------------------------
# The lengths of text that has a column of its own match store.schema's column; the others bound
# what the snapshot (a text column) keeps and what emails show.

MAX_CHECKOUT_ID_LENGTH = 64
"""The engine's id of an abandoned checkout (checkouts.id), and so any id in a request path."""
MAX_ID_LENGTH = 200
"""checkoutId, cartId, orderId, the buyer's contactId, visitorId, memberId, userId, a line item's
id: the columns checkout_id, cart_id, order_id and buyer_*_id."""
MAX_EMAIL_LENGTH = 320
"""The buyer_email column; the address check itself refuses more than 254 characters."""
MAX_NAME_LENGTH = 300
"""contactDetails.firstName, lastName and company."""
MAX_PHONE_LENGTH = 50
MAX_ITEM_NAME_LENGTH = 500
MAX_LABEL_LENGTH = 100
"""formattedAmount, formattedConvertedAmount."""
MAX_URL_LENGTH = 2000
"""checkoutUrl, a line item's imageUrl and url (and a subscription's url column)."""
MAX_LANGUAGE_LENGTH = 35
MAX_TIME_ZONE_LENGTH = 64
MAX_LINE_ITEMS = 500
MAX_QUANTITY = 1_000_000
MAX_AMOUNT_DIGITS = 18
"""Digits before the decimal point of an amount."""
MAX_AMOUNT_DECIMALS = 6
"""Digits after the decimal point of an amount (ISO 4217 currencies use at most 4)."""
EARLIEST_DATE = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_DATE = datetime(9000, 1, 1, tzinfo=UTC)
"""Dates lie in [EARLIEST_DATE, LATEST_DATE): far from the ends of what datetimes (and the
databases) hold, so that a policy's delays can be added to any of them."""

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Unicode category Cc (C0 and C1 controls, DEL) and Cs (lone surrogates, which UTF-8 cannot
carry): fixed ranges, so one regular expression finds them at C speed."""
_AMOUNT = re.compile(
    rf"-?[0-9]{{1,{MAX_AMOUNT_DIGITS}}}(?:\.[0-9]{{1,{MAX_AMOUNT_DECIMALS}}})?", re.ASCII
)
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*", re.ASCII)


def _shown(value: str, limit: int = 40) -> str:
    """`value` quoted for an error message, cut short: a refusal never echoes a huge input."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


def control_character_problem(value: str) -> str | None:
    """Why `value` may not be stored or compared (a control character), or None."""
    found = _CONTROL.search(value)
    if found is None:
        return None
    return (
        f"must not contain control characters (U+{ord(found.group()):04X} at character "
        f"{found.start() + 1})"
    )


def text_problem(value: str, max_length: int) -> str | None:
    """What is wrong with `value` as text of at most `max_length` characters, or None: the rule
    of the annotated types below for values checked by hand (query values, path ids), in
    pydantic's words."""
    if len(value) > max_length:
        plural = "s" if max_length != 1 else ""
        return f"String should have at most {max_length} character{plural}"
    return control_character_problem(value)


def _no_control_characters(value: str) -> str:
    problem = control_character_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _decimal_string(value: str) -> str:
    if not _AMOUNT.fullmatch(value):
        raise ValueError(
            f"{_shown(value)} is not a decimal amount such as '12.50' (ASCII digits, at most "
            f"{MAX_AMOUNT_DIGITS} before the point and {MAX_AMOUNT_DECIMALS} after it)"
        )
    return value


def _currency_code(value: str) -> str:
    if value not in ISO_4217_CODES:
        raise ValueError(f"{_shown(value)} is not an ISO 4217 currency code such as 'EUR' or 'USD'")
    return value


def _web_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        web = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        web = False
    if not web:
        raise ValueError(f"{_shown(value)} is not an http(s) URL")
    return value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"{_shown(value)} is not an IANA time zone such as 'Europe/Berlin'"
        ) from None
    return value


def _language_tag(value: str) -> str:
    if not _LANGUAGE_TAG.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a language tag such as 'en' or 'de-AT'")
    return value


DATE_RANGE_PROBLEM = (
    f"must lie between {EARLIEST_DATE.date().isoformat()} and {LATEST_DATE.date().isoformat()}"
)


def in_date_range(value: datetime) -> bool:
    """Whether an aware moment lies within the dates the engine keeps (see LATEST_DATE)."""
    return EARLIEST_DATE <= value < LATEST_DATE


def _in_date_range(value: datetime) -> datetime:
    if not in_date_range(value):
        raise ValueError(DATE_RANGE_PROBLEM)
    return value


_CLEAN = AfterValidator(_no_control_characters)

IdText = Annotated[str, Field(max_length=MAX_ID_LENGTH), _CLEAN]
"""A shop's id (checkoutId, cartId, orderId, the buyer's ids, a line item's id): stored in, or
compared with, a column of MAX_ID_LENGTH."""
IdentityValue = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH), _CLEAN]
"""An identity given to look checkouts up by: an IdText that is not empty."""
CheckoutIdText = Annotated[str, Field(max_length=MAX_CHECKOUT_ID_LENGTH), _CLEAN]
"""The engine's id of an abandoned checkout."""
NameText = Annotated[str, Field(max_length=MAX_NAME_LENGTH), _CLEAN]
PhoneText = Annotated[str, Field(max_length=MAX_PHONE_LENGTH), _CLEAN]
ItemName = Annotated[str, Field(min_length=1, max_length=MAX_ITEM_NAME_LENGTH), _CLEAN]
LabelText = Annotated[str, Field(max_length=MAX_LABEL_LENGTH), _CLEAN]
DecimalString = Annotated[str, AfterValidator(_decimal_string)]
"""An amount: optional minus, up to MAX_AMOUNT_DIGITS digits, optionally a point and up to
MAX_AMOUNT_DECIMALS digits; ASCII digits only, no exponent."""
TimeZoneName = Annotated[str, Field(max_length=MAX_TIME_ZONE_LENGTH), AfterValidator(_time_zone)]
CurrencyCode = Annotated[str, AfterValidator(_currency_code)]
LanguageTag = Annotated[str, Field(max_length=MAX_LANGUAGE_LENGTH), AfterValidator(_language_tag)]
UrlText = Annotated[str, Field(max_length=MAX_URL_LENGTH), _CLEAN]
"""Text meant as a URL: bounded, and free of control characters, so no CR/LF can ever split a
header (a Location, a webhook request) it is written into."""
WebUrl = Annotated[UrlText, AfterValidator(_web_url)]
"""An http(s) URL with a host."""
Moment = Annotated[AwareDatetime, AfterValidator(_in_date_range)]
"""An aware date-time between EARLIEST_DATE and LATEST_DATE."""


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
    formatted_amount: LabelText | None = None
    formatted_converted_amount: LabelText | None = None

    def display(self, currency: str) -> str:
        """What a buyer reads: the shop's own formatting when it sent one."""
        return self.formatted_amount or f"{self.amount} {currency}"


class BuyerInfo(CamelModel):
    contact_id: IdText | None = None
    email: EmailStr | None = None
    visitor_id: IdText | None = None
    member_id: IdText | None = None
    user_id: IdText | None = None

    @model_validator(mode="after")
    def _exactly_one_identity(self) -> Self:
        given = [n for n in ("visitorId", "memberId", "userId") if getattr(self, _snake(n))]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"needs exactly one of visitorId, memberId, userId (found: {found})")
        return self


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
    first_name: NameText | None = None
    last_name: NameText | None = None
    phone: PhoneText | None = None
    company: NameText | None = None


class LineItem(CamelModel):
    id: IdText | None = None
    name: ItemName
    quantity: int = Field(ge=1, le=MAX_QUANTITY)
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

    id: CheckoutIdText | None = None
    created_date: Moment | None = None
    updated_date: Moment | None = None
    checkout_id: IdText | None = None
    cart_id: IdText | None = None
    status: CheckoutStatus = CheckoutStatus.ABANDONED
    checkout_recovered_date: Moment | None = None
    order_id: IdText | None = None
    buyer_info: BuyerInfo
    buyer_language: LanguageTag = "en"
    contact_details: ContactDetails = Field(default_factory=ContactDetails)
    currency: CurrencyCode
    conversion_currency: CurrencyCode | None = None
    subtotal_price: Price | None = None
    total_price: Price
    line_items: list[LineItem] = Field(default_factory=list, max_length=MAX_LINE_ITEMS)
    checkout_url: WebUrl
    buyer_time_zone: TimeZoneName | None = None
    """Our extension: the buyer's IANA zone, for send windows; the policy's zone when absent."""
    marketing_consent: bool | None = None
    """Our extension: whether the buyer agreed to marketing email (absent: not known, so no)."""
    sms_consent: bool | None = None
    """Our extension: whether the buyer agreed to recovery texts at contactDetails.phone
    (absent: no SMS step texts them). Apart from marketingConsent: SMS consent is its own."""
    recovery_attribution: RecoveryAttribution | None = None
    stop_reason: StopReason | None = None
    """Engine-owned, our extension: why a checkout still ABANDONED takes no further step."""
    flow_state: FlowState | None = None
    """Engine-owned, our extension: PENDING until Temporal confirmed every change for the flow."""
    activities: list[ActivityEntry] = Field(default_factory=list)

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
    def scheduled_at(self) -> datetime | None:
        """When the engine took the first report: the time of the SCHEDULED entry."""
        return next(
            (a.created_date for a in self.activities if a.type is ActivityType.SCHEDULED), None
        )

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
