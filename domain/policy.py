"""Recovery policies: the ordered steps a flow runs, as declared in a policy TOML file.

The policy travels inside the workflow input, so a running flow keeps the policy it started with and
an edited file only affects new flows.
"""

import re
from datetime import time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from domain.checkout import CurrencyCode, DecimalString, TimeZoneName, WebUrl
from domain.durations import FORMS, MAX_DURATION, parse_duration
from domain.errors import InvalidInputError, describe_validation_error

_TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


_WRITTEN_BY_PEOPLE = {"policy_file": True}
"""The validation context of parse_policy: durations only in the documented form ("1h")."""


def _duration(value: Any, info: ValidationInfo) -> Any:
    # Policy files say "1h"; workflow payloads carry pydantic's ISO 8601 form ("PT1H"), which
    # falls through to pydantic's own timedelta parsing. Nobody writes a bare number of seconds.
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a duration written like {FORMS} (in quotes)")
    from_payload = not (info.context or {}).get("policy_file")
    return value if from_payload and value.startswith(("P", "-P")) else parse_duration(value)


def _in_range(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must not be negative")
    if value > MAX_DURATION:
        raise ValueError(f"must be at most {MAX_DURATION.days}d (about ten years)")
    return value


def _template_name(value: str) -> str:
    if not _TEMPLATE_NAME.match(value):
        raise ValueError(f"{value!r} is not a template name (lowercase letters, digits, _ and -)")
    return value


def _clock_time(value: Any) -> Any:
    # TOML has a local-time type (09:00:00) but people write "09:00"; both are accepted.
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a time of day such as '09:00'") from None
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_in_range)]
TemplateName = Annotated[str, AfterValidator(_template_name)]
ClockTime = Annotated[time, BeforeValidator(_clock_time)]


class _PolicyPart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepConditions(_PolicyPart):
    """What must hold, at the step's due time and on the newest snapshot, for the step to run."""

    min_total: DecimalString | None = None
    max_total: DecimalString | None = None
    currencies: list[CurrencyCode] | None = None
    """The totals above are compared in the checkout's own currency; list the currencies they
    are meant for when a shop sells in several."""
    buyer: Literal["any", "member", "visitor"] = "any"
    """member: the buyer is logged in (memberId or userId); visitor: an anonymous visitor."""
    languages: list[str] | None = None
    has_phone: bool | None = None

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.min_total and self.max_total and Decimal(self.min_total) > Decimal(self.max_total):
            raise ValueError("min_total is above max_total: no checkout could ever match")
        return self


class Coupon(_PolicyPart):
    """A unique single-use discount code created for this checkout and step."""

    percent_off: int | None = Field(default=None, ge=1, le=100)
    amount_off: DecimalString | None = None
    """In the checkout's currency."""
    valid_for: Duration = timedelta(days=7)
    prefix: str = Field(default="BACK", pattern=r"^[A-Z0-9]{0,12}$")

    @model_validator(mode="after")
    def _one_discount(self) -> Self:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("give exactly one of percent_off and amount_off")
        return self


class _Step(_PolicyPart):
    delay: Duration
    """Counted from the moment of abandonment, not from the previous step."""
    conditions: StepConditions = StepConditions()


class Variant(_PolicyPart):
    """One version of an email step in an A/B test: another template, another subject, or both.

    Which checkout gets which variant is domain.variants' rule."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")
    """Recorded on the step's entry (`variant`) and in the stats."""
    weight: int = Field(default=1, ge=1)
    """Its share of the checkouts is weight / the sum of the step's weights."""
    template: TemplateName | None = None
    """Another email template; absent: the step's own."""
    subject: str | None = Field(default=None, min_length=1, max_length=500)
    """A subject line (Jinja, the context of the template's subject.txt) instead of the
    template's."""

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if self.template is None and self.subject is None:
            raise ValueError("give a template, a subject, or both")
        return self


class EmailStep(_Step):
    action: Literal["email"]
    template: TemplateName
    coupon: Coupon | None = None
    variants: list[Variant] | None = Field(default=None, min_length=2, max_length=10)
    """An A/B test of the step; None: the step sends its template to everyone."""

    @model_validator(mode="after")
    def _distinct_variants(self) -> Self:
        names = [variant.name for variant in self.variants or ()]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"variant names must be unique in the step: {', '.join(twice)}")
        return self


class NotificationStep(_Step):
    action: Literal["notification"]
    url: WebUrl
    template: TemplateName = "staff_alert"


class TaskStep(_Step):
    action: Literal["task"]
    assignee: str = Field(min_length=1, max_length=200)
    """Kept in the task's `assignee` column (200 characters)."""
    template: TemplateName = "follow_up"
    due_in: Duration = timedelta(days=1)
    """How long staff have for the task once it is created."""


class SmsStep(_Step):
    """A recovery text to the buyer's phone (domain.sms: consent, number, length)."""

    action: Literal["sms"]
    template: TemplateName = "reminder"


Step = Annotated[EmailStep | NotificationStep | TaskStep | SmsStep, Field(discriminator="action")]


class SendWindow(_PolicyPart):
    """The daily hours, in the buyer's time zone, in which emails may go out."""

    start: ClockTime
    end: ClockTime
    """Exclusive. An end before the start means a window across midnight (22:00-06:00)."""

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would be empty")
        return self


DEFAULT_SMS_WINDOW = SendWindow(start=time(9), end=time(20))


class FrequencyCap(_PolicyPart):
    """At most one recovery email per buyer (email address) per window, across checkouts."""

    window: Duration = timedelta(hours=24)
    """0s turns the cap off."""
    when_capped: Literal["defer", "skip"] = "defer"
    """defer: send at the end of the window; skip: record EMAIL_NOT_SENT (frequency_capped)."""


ConsentMode = Literal["all", "subscribers_only", "first_email_only"]


class RecoveryPolicy(_PolicyPart):
    name: str = Field(min_length=1, max_length=200)
    listen_window: Duration = timedelta(days=7)
    """How long a flow keeps listening for recovery after its last step."""
    time_zone: TimeZoneName = "UTC"
    """The shop's zone, for buyers whose checkout names none."""
    send_window: SendWindow | None = None
    sms_window: SendWindow = DEFAULT_SMS_WINDOW
    """The daily hours, in the buyer's zone, in which SMS steps may text: a step due outside
    them waits for the next opening (always on: nobody wants a shop's text at night)."""
    frequency_cap: FrequencyCap = FrequencyCap()
    consent: ConsentMode = "all"
    on_cart_update: Literal["keep", "reset"] = "keep"
    holdout_percent: float = Field(default=0, ge=0, le=100)
    attribution_window: Duration = timedelta(days=3)
    """A recovery this long after an email counts as assisted by it."""
    max_age: Duration = timedelta(days=30)
    """A checkout reported longer than this after its abandonment is recorded, not messaged;
    0s means no limit."""
    overdue_steps: Literal["run", "skip"] = "run"
    """A step whose due time had passed when the checkout was reported: run it at once or skip."""
    on_purchase: Literal["stop_buyer", "stop_checkout"] = "stop_buyer"
    """stop_buyer: recovering this checkout stops every other open flow of the same buyer
    (same email, contactId, memberId or userId); stop_checkout: only this one."""
    send_retry_window: Duration = timedelta(hours=6)
    """While the relay is unreachable or answers 4xx, an email step keeps trying this long
    (never past the next step's due time) before it records smtp_unavailable."""
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _steps_in_order(self) -> Self:
        for index in range(1, len(self.steps)):
            if self.steps[index].delay < self.steps[index - 1].delay:
                raise ValueError(
                    f"step {index + 1} is due before step {index}; list steps in the order of "
                    "their delays"
                )
        return self


_STEP_ACTIONS = ("email", "notification", "task", "sms")


def _locate_policy_field(loc: tuple[int | str, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        rest = [str(p) for p in loc[2:]]
        # The discriminator tag ("email", ...) sits between the index and the field.
        action = rest.pop(0) if rest and rest[0] in _STEP_ACTIONS else None
        where = f"step {loc[1] + 1}" + (f" ({action})" if action else "")
        if rest[:1] == ["variants"] and len(rest) >= 2 and rest[1].isdigit():
            where += f", variant {int(rest[1]) + 1}"
            rest = rest[2:]
        return f"{where}: {'.'.join(rest)}" if rest else where
    return ".".join(str(p) for p in loc) or "policy"


def parse_policy(data: object, source: str) -> RecoveryPolicy:
    """Validate policy data read from `source`; errors name the step and the field."""
    try:
        return RecoveryPolicy.model_validate(data, context=_WRITTEN_BY_PEOPLE)
    except ValidationError as err:
        problems = describe_validation_error(err, _locate_policy_field)
        raise InvalidInputError(f"recovery policy {source}", problems) from None
