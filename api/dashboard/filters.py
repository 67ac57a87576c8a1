"""The checkout list's form fields, turned into a query of the query API (domain.query).

Every field travels in the page's URL (a GET form), so that a filtered list is a link to share."""

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from domain.activity import NotSentReason
from domain.checkout import CheckoutStatus, StopReason

PAGE_SIZE = 25
URL_NAMES = {"checkout_id": "checkoutId", "cart_id": "cartId", "not_sent": "notSent"}
"""The form's (and the URL's) names where they differ from the fields': the query API's."""
MAX_TEXT = 200
"""Longer than any id or address the report accepts; the query API checks the exact limits."""


@dataclass(frozen=True)
class ListFilters:
    status: str = ""
    email: str = ""
    """The buyer's email or its start (a prefix: "ada@" finds ada@example.com)."""
    checkout_id: str = ""
    """The shop's checkoutId, exactly."""
    cart_id: str = ""
    """The shop's cartId, exactly."""
    reason: str = ""
    """Why an ABANDONED checkout takes no further step: a StopReason value."""
    not_sent: str = ""
    """A NotSentReason value: checkouts with at least one email not sent for it. Beyond the query
    language, so not in `query_body`: the store takes it beside the query (`store_not_sent`)."""
    since: str = ""
    """A day (YYYY-MM-DD, as a date input sends it): checkouts abandoned from its UTC start."""
    until: str = ""
    """A day: checkouts abandoned up to its UTC end."""

    @classmethod
    def given(cls, **fields: str) -> "ListFilters":
        """The form's fields, trimmed."""
        return cls(**{name: value.strip() for name, value in fields.items()})

    def problems(self) -> list[str]:
        found = []
        if self.status and self.status not in CheckoutStatus.__members__:
            found.append(f"status must be one of {', '.join(CheckoutStatus)}")
        reasons = [reason.value for reason in StopReason]
        if self.reason and self.reason not in reasons:
            found.append(f"reason must be one of {', '.join(reasons)}")
        if self.not_sent and self.not_sent not in NOT_SENT_REASONS:
            found.append(f"not sent because: must be one of {', '.join(NOT_SENT_REASONS)}")
        for name in ("email", "checkout_id", "cart_id"):
            if len(getattr(self, name)) > MAX_TEXT:
                found.append(f"{name.replace('_', ' ')}: at most {MAX_TEXT} characters")
        first, last = self._day("since", self.since, found), self._day("until", self.until, found)
        if first and last and last < first:
            found.append("until: must not be before since")
        return found

    @staticmethod
    def _day(name: str, text: str, found: list[str]) -> date | None:
        if not text:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            found.append(f"{name}: {text[:40]!r} is not a date such as 2025-01-31")
            return None

    def query_body(self, cursor: str | None) -> dict[str, Any]:
        """The body of `POST .../query`; a cursor carries the filter and sort it continues."""
        if cursor:
            return {"query": {"cursorPaging": {"limit": PAGE_SIZE, "cursor": cursor}}}
        conditions: list[dict[str, Any]] = []
        if self.status:
            conditions.append({"status": {"$eq": self.status}})
        if self.email:
            # A prefix, so that "ada@" or the full address both find the buyer.
            conditions.append({"buyerInfo.email": {"$startsWith": self.email}})
        if self.checkout_id:
            conditions.append({"checkoutId": {"$eq": self.checkout_id}})
        if self.cart_id:
            conditions.append({"cartId": {"$eq": self.cart_id}})
        if self.reason:
            conditions.append({"stopReason": {"$eq": self.reason}})
        if self.since:
            start = datetime.combine(date.fromisoformat(self.since), time(), tzinfo=UTC)
            conditions.append({"createdDate": {"$gte": start.isoformat()}})
        if self.until:
            following = date.fromisoformat(self.until) + timedelta(days=1)
            end = datetime.combine(following, time(), tzinfo=UTC)
            conditions.append({"createdDate": {"$lt": end.isoformat()}})
        return {
            "query": {
                "filter": {"$and": conditions} if conditions else {},
                "sort": [{"fieldName": "createdDate", "order": "DESC"}],
                "cursorPaging": {"limit": PAGE_SIZE},
            }
        }

    @property
    def store_not_sent(self) -> str | None:
        """What `SqlStore.query` takes as `not_sent`, on every page (no cursor carries it)."""
        return self.not_sent or None

    def link(self, cursor: str | None = None) -> str:
        """The list's URL with these filters (and a page's cursor): what the pager links to."""
        fields = {URL_NAMES.get(name, name): value for name, value in asdict(self).items() if value}
        if cursor:
            fields["cursor"] = cursor
        query = urlencode(fields)
        return "/dashboard/checkouts" + (f"?{query}" if query else "")


REASONS = [reason.value for reason in StopReason]
NOT_SENT_REASONS = [reason.value for reason in NotSentReason]
