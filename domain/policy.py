"""Recovery policies: the ordered steps a flow runs, as declared in a policy TOML file.

The policy travels inside the workflow input, so a running flow keeps the policy it started with and
an edited file only affects new flows.
"""

import re
from datetime import timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from domain.checkout import WebUrl
from domain.durations import parse_duration
from domain.errors import InvalidInputError, describe_validation_error

_TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _duration(value: Any) -> Any:
    # Policy files say "1h"; workflow payloads carry pydantic's ISO 8601 form ("PT1H"), which
    # falls through to pydantic's own timedelta parsing.
    if isinstance(value, str) and not value.startswith(("P", "-P")):
        return parse_duration(value)
    return value


def _non_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must not be negative")
    return value


def _template_name(value: str) -> str:
    if not _TEMPLATE_NAME.match(value):
        raise ValueError(f"{value!r} is not a template name (lowercase letters, digits, _ and -)")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_non_negative)]
TemplateName = Annotated[str, AfterValidator(_template_name)]


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    delay: Duration
    """Counted from the moment of abandonment, not from the previous step."""


class EmailStep(_Step):
    action: Literal["email"]
    template: TemplateName


class NotificationStep(_Step):
    action: Literal["notification"]
    url: WebUrl
    template: TemplateName = "staff_alert"


class TaskStep(_Step):
    action: Literal["task"]
    assignee: str = Field(min_length=1)
    template: TemplateName = "follow_up"
    due_in: Duration = timedelta(days=1)
    """How long staff have for the task once it is created."""


Step = Annotated[EmailStep | NotificationStep | TaskStep, Field(discriminator="action")]


class RecoveryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    listen_window: Duration = timedelta(days=7)
    """How long a flow keeps listening for recovery after its last step."""
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


def _locate_policy_field(loc: tuple[int | str, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        rest = [str(p) for p in loc[2:]]
        # The discriminator tag ("email", ...) sits between the index and the field.
        action = rest.pop(0) if rest and rest[0] in ("email", "notification", "task") else None
        where = f"step {loc[1] + 1}" + (f" ({action})" if action else "")
        return f"{where}: {'.'.join(rest)}" if rest else where
    return ".".join(str(p) for p in loc) or "policy"


def parse_policy(data: object, source: str) -> RecoveryPolicy:
    """Validate policy data read from `source`; errors name the step and the field."""
    try:
        return RecoveryPolicy.model_validate(data)
    except ValidationError as err:
        problems = describe_validation_error(err, _locate_policy_field)
        raise InvalidInputError(f"recovery policy {source}", problems) from None
