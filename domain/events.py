"""Events for webhook subscribers, in the reference API's envelope. Pure: safe for workflows."""

from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

from domain.base import CamelModel

ENTITY_FQDN = "checkout_recovery.v1.abandoned_checkout"
"""Our entity's name; the reference uses `wix.ecom.v1.abandoned_checkout` in the same place."""


class EventSlug(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    RECOVERED = "recovered"
    DELETED = "deleted"


ALL_EVENTS = "*"


def parse_event_filter(names: list[str]) -> frozenset[str]:
    """Slugs a subscription wants; ["*"] (or an empty list) for all. ValueError names a bad one."""
    if not names or names == [ALL_EVENTS]:
        return frozenset({ALL_EVENTS})
    known = {s.value for s in EventSlug}
    for name in names:
        if name not in known:
            raise ValueError(f"unknown event {name!r}; known: {', '.join(sorted(known))} or *")
    return frozenset(names)


class EventEnvelope(CamelModel):
    """What a subscriber receives; `id` is the same on every redelivery, for de-duplication."""

    id: str
    entity_fqdn: str = ENTITY_FQDN
    slug: EventSlug
    entity_id: str
    event_time: AwareDatetime
    entity_event_sequence: int
    """Counts up from 1 per checkout; order events of one checkout by it, not by arrival."""
    entity: dict[str, Any]


class DeliveryRequest(BaseModel):
    """One event to one subscriber; the body and the secret stay in the store, out of Temporal."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    event_id: str
    subscription_id: str


DELIVER_EVENT = "deliver_event"
LIST_EVENT_SUBSCRIBERS = "list_event_subscribers"
EVENT_WORKFLOW_PREFIX = "event-"
