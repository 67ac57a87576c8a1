"""What every provider's reader does the same way: refuse, parse a body, make a report.

The refusals never quote the body or an address: a provider's payload names buyers, and an error
message ends up in logs and in the answer to whoever called.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from api.feedback.source import FeedbackRefusedError
from domain.feedback import FeedbackKind, FeedbackReport, bare_message_id

T = TypeVar("T")

MESSAGE_ID_MAX = 300
"""FeedbackReport.message_id's limit."""


class ProviderModel(BaseModel):
    """A provider's payload as we read it: only the fields we use, the rest ignored (providers
    add fields without notice, and a new one must not make us refuse their calls)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


def bad_signature(reason: str) -> FeedbackRefusedError:
    return FeedbackRefusedError(401, "bad_signature", reason)


def invalid_feedback(reason: str) -> FeedbackRefusedError:
    return FeedbackRefusedError(400, "invalid_feedback", reason)


def _where(err: ValidationError) -> str:
    """Where a payload is wrong, by field path and error kind only: pydantic's own message can
    quote the value it refused."""
    places = [
        ".".join(str(part) for part in error["loc"]) + f" ({error['type']})"
        for error in err.errors(include_url=False, include_input=False)[:3]
    ]
    return ", ".join(places) or "unreadable"


def parse_json(adapter: TypeAdapter[T], body: bytes | str, what: str) -> T:
    """`body` read as `adapter`'s type, or 400 naming the fields (never their values)."""
    try:
        return adapter.validate_json(body)
    except ValidationError as err:
        raise invalid_feedback(f"{what} is not readable: {_where(err)}") from None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header by its lower-cased name (FeedbackRequest keeps them lower-cased)."""
    return headers.get(name) or None


def feedback_report(
    provider: str,
    kind: FeedbackKind,
    email: str,
    message_id: str | None,
    occurred_at: datetime,
) -> FeedbackReport:
    """One report; 400 when the provider's event cannot make one (no usable recipient)."""
    bare = bare_message_id(message_id)
    if bare is not None and len(bare) > MESSAGE_ID_MAX:
        bare = None  # longer than any Message-ID we give: not ours, so it links to nothing
    try:
        return FeedbackReport(
            provider=provider,
            kind=kind,
            email=email.strip(),
            message_id=bare,
            occurred_at=occurred_at,
        )
    except ValidationError as err:
        raise invalid_feedback(f"an event is not readable: {_where(err)}") from None


def fresh_timestamp(value: str | None, tolerance_seconds: int, now: float) -> int:
    """A signed call's Unix timestamp header, refused (401) when it is missing or further than
    the tolerance from now, before or after: a captured call replayed later is refused even with
    its valid signature, and a sender's clock may run a little ahead."""
    if value is None:
        raise bad_signature("the signature's timestamp is missing")
    try:
        timestamp = int(value)
    except ValueError:
        raise bad_signature("the signature's timestamp is not a Unix time") from None
    if abs(now - timestamp) > tolerance_seconds:
        raise bad_signature("the signature's timestamp is too far from now")
    return timestamp
