"""Request and response bodies as the OpenAPI document describes them."""

from typing import Any

from pydantic import AwareDatetime, Field

from domain.activity import ActivityEntry
from domain.base import CamelModel
from domain.checkout import AbandonedCheckout, BuyerIdentity, IdText, Moment, UrlText
from domain.query import MAX_LIMIT, MAX_OFFSET


class CheckoutEnvelope(CamelModel):
    abandoned_checkout: AbandonedCheckout


class ActivityList(CamelModel):
    activities: list[ActivityEntry]


class RecoverBody(CamelModel):
    order_id: IdText | None = None
    checkout_recovered_date: Moment | None = None
    """When the buyer bought; now when not given."""


class RecoverByReferenceBody(RecoverBody):
    checkout_id: IdText | None = None
    cart_id: IdText | None = None


class RecoverBuyerBody(RecoverBody):
    buyer_info: BuyerIdentity


class BuyerRecoveryResponse(CamelModel):
    abandoned_checkout: AbandonedCheckout
    """The buyer's checkout recovered with the order (the most recently updated open one)."""
    stopped_checkout_ids: list[str]
    """The buyer's other open checkouts, now stopped (stopReason buyer_purchased)."""


class Cursors(CamelModel):
    next: str | None = None
    prev: str | None = None


class PagingMetadata(CamelModel):
    count: int
    offset: int | None = None
    total: int | None = None
    """Offset paging: how many match in all; absent when more than 10,000 do."""
    too_many_to_count: bool | None = None
    """Offset paging: true when more than 10,000 match, so `total` was not counted (the
    reference's flag for a total it did not calculate)."""
    cursors: Cursors = Field(default_factory=Cursors)


class QueryResponse(CamelModel):
    abandoned_checkouts: list[AbandonedCheckout]
    metadata: PagingMetadata


class SubscriptionBody(CamelModel):
    url: UrlText
    """An http(s) URL; the route checks the scheme with the other fields, to list every problem."""
    events: list[str] = Field(default_factory=lambda: ["*"], max_length=10)
    """Event slugs (created, updated, recovered, deleted), or ["*"] for all."""
    secret: str | None = Field(default=None, max_length=200)
    """A Standard Webhooks secret (whsec_...); one is generated when not given."""


class SubscriptionView(CamelModel):
    id: str
    url: str
    events: list[str]
    created_date: AwareDatetime
    secret: str | None = None
    """Shown once, in the answer to the creation; never in listings."""


class SubscriptionEnvelope(CamelModel):
    subscription: SubscriptionView


class SubscriptionList(CamelModel):
    subscriptions: list[SubscriptionView]


class Empty(CamelModel):
    pass


def report_body_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON schema of a report body and the definitions it refers to, for the OpenAPI
    document: an AbandonedCheckout without the fields the engine owns."""
    schema = AbandonedCheckout.model_json_schema(
        by_alias=True, ref_template="#/components/schemas/{model}"
    )
    definitions = schema.pop("$defs", {})
    for name in ("id", "status", "activities", "checkoutRecoveredDate", "orderId"):
        schema["properties"].pop(name, None)
    schema["title"] = "ReportedCheckout"
    return schema, definitions


def query_body_schema() -> dict[str, Any]:
    """The outline of a query body; `domain.query` checks the details and names what is wrong."""
    paging = {
        "type": "object",
        "properties": {
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
            "cursor": {"type": "string"},
        },
    }
    sort_item = {
        "type": "object",
        "properties": {
            "fieldName": {"type": "string"},
            "order": {"type": "string", "enum": ["ASC", "DESC"]},
        },
        "required": ["fieldName"],
    }
    return {
        "title": "CheckoutQueryBody",
        "type": "object",
        "properties": {
            "query": {
                "type": "object",
                "properties": {
                    "filter": {"type": "object"},
                    "sort": {"type": "array", "items": sort_item},
                    "paging": paging,
                    "cursorPaging": paging,
                },
            }
        },
    }
