"""What every provider's webhook reader offers the feedback route: verify, then read."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from domain.feedback import FeedbackReport


@dataclass(frozen=True)
class FeedbackRequest:
    """A webhook call as it reached us: what a provider's signature covers."""

    url: str
    """The full URL the provider called (some sign it, Twilio-style)."""
    headers: Mapping[str, str]
    """Lower-cased names."""
    body: bytes


@dataclass(frozen=True)
class FeedbackReading:
    """A verified call: its reports, and what to answer when the call was not a report (an SNS
    subscription confirmed: `note` says so and `reports` is empty)."""

    reports: list[FeedbackReport] = field(default_factory=list)
    note: str | None = None


class FeedbackRefusedError(Exception):
    """The call is not from the provider (bad or missing signature: 401), or is not readable as
    its format (400). `code` is the API error's machine-readable code; the message never quotes
    the body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class FeedbackSource(Protocol):
    """One provider's webhook. `name` is the route's last segment (/feedback/v1/{name})."""

    @property
    def name(self) -> str: ...

    async def read(self, request: FeedbackRequest) -> FeedbackReading:
        """Verify the call, then read it; FeedbackRefusedError when it is not to be trusted."""
        ...
