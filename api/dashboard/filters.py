"""The checkout list's form fields, turned into a query of the query API (domain.query)."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from domain.checkout import CheckoutStatus

PAGE_SIZE = 25


@dataclass(frozen=True)
class ListFilters:
    status: str = ""
    email: str = ""
    since: str = ""
    """A day (YYYY-MM-DD, as a date input sends it): checkouts abandoned from its UTC start."""

    def problems(self) -> list[str]:
        found = []
        if self.status and self.status not in CheckoutStatus.__members__:
            found.append(f"status must be one of {', '.join(CheckoutStatus)}")
        if self.since:
            try:
                date.fromisoformat(self.since)
            except ValueError:
                found.append(f"since: {self.since!r} is not a date such as 2025-01-31")
        return found

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
        if self.since:
            start = datetime.combine(date.fromisoformat(self.since), time(), tzinfo=UTC)
            conditions.append({"createdDate": {"$gte": start.isoformat()}})
        return {
            "query": {
                "filter": {"$and": conditions} if conditions else {},
                "sort": [{"fieldName": "createdDate", "order": "DESC"}],
                "cursorPaging": {"limit": PAGE_SIZE},
            }
        }
