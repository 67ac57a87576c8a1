"""The query field stopReason (why an ABANDONED checkout takes no further step), on each database:
the dashboard's reason filter uses it."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from domain.checkout import StopReason
from domain.errors import InvalidInputError
from domain.query import parse_query
from store.schema import checkouts
from store.sql import SqlStore
from tests.support import sample_checkout

AT = datetime(2026, 11, 1, tzinfo=UTC)


async def _seed(store: SqlStore) -> None:
    for index, reason in enumerate([None, StopReason.CANCELLED, StopReason.BUYER_PURCHASED, None]):
        await store.save_reported(sample_checkout(id=f"s{index}", createdDate=AT.isoformat()), AT)
        if reason is not None:
            async with store.engine.begin() as conn:
                await conn.execute(
                    update(checkouts)
                    .where(checkouts.c.id == f"s{index}")
                    .values(stop_reason=reason)
                )


async def _ids(store: SqlStore, filter_: dict[str, object]) -> list[str]:
    query = parse_query({"query": {"filter": filter_, "sort": [{"fieldName": "id"}]}})
    return [str(checkout.id) for checkout in (await store.query(query)).checkouts]


async def test_stop_reason_filters_by_equality_set_and_presence(store: SqlStore) -> None:
    await _seed(store)
    assert await _ids(store, {"stopReason": {"$eq": "cancelled"}}) == ["s1"]
    assert await _ids(store, {"stopReason": {"$in": ["cancelled", "buyer_purchased"]}}) == [
        "s1",
        "s2",
    ]
    assert await _ids(store, {"stopReason": {"$exists": False}}) == ["s0", "s3"]
    assert await _ids(store, {"stopReason": {"$ne": "cancelled"}}) == ["s0", "s2", "s3"]


def test_stop_reason_is_not_sortable() -> None:
    with pytest.raises(InvalidInputError):
        parse_query({"query": {"sort": [{"fieldName": "stopReason"}]}})
