"""Shops in one store: ids per shop, reads that never cross shops, per-shop email limits, and the
migration that puts existing data in `default` (SQLite and PostgreSQL)."""

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import Connection, select, text

from domain.activity import ActivityEntry, ActivityType
from domain.checkout import AbandonedCheckout, BuyerIdentity
from domain.query import parse_query
from domain.shops import DEFAULT_SHOP
from domain.task import StaffTask
from service.checkouts import derive_checkout_id
from store.email_limits import address_key
from store.migrate import alembic_config, head_revision
from store.schema import checkouts, events, suppressions
from store.sql import SqlStore
from store.stats import checkout_stats
from tests.support import sample_checkout

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
A, B = "shop-a", "shop-b"
HOUR = timedelta(hours=1)


def _checkout(shop_id: str, checkout_id: str = "co-1001", **data: object) -> AbandonedCheckout:
    reported = sample_checkout(checkoutId=checkout_id, **data)
    return reported.model_copy(
        update={"id": derive_checkout_id(reported, shop_id), "created_date": NOW}
    )


async def _report(store: SqlStore, shop_id: str, checkout: AbandonedCheckout) -> str:
    await store.save_reported(checkout, NOW, shop_id=shop_id)
    assert checkout.id is not None
    return checkout.id


def test_default_shop_ids_are_derived_as_before_shops():
    # Literals from the derivation before shops existed: existing checkouts and flows keep them.
    by_checkout = sample_checkout(checkoutId="co-1001")
    by_cart = sample_checkout(checkoutId=None, cartId="cart-1001")
    assert derive_checkout_id(by_checkout) == "03dcdeb4-1944-5a3c-99b6-afbd6fbe541d"
    assert derive_checkout_id(by_checkout, DEFAULT_SHOP) == "03dcdeb4-1944-5a3c-99b6-afbd6fbe541d"
    assert derive_checkout_id(by_cart) == "a43693b0-52f7-5d3b-b669-99fa2a56b91d"
    others = {derive_checkout_id(by_checkout, shop) for shop in (A, B)}
    assert len(others) == 2 and "03dcdeb4-1944-5a3c-99b6-afbd6fbe541d" not in others
    assert all(shop not in id_ for shop in (A, B) for id_ in others)  # no shop in the id


async def test_the_same_checkout_id_in_two_shops_gives_two_checkouts(store: SqlStore):
    in_a = await _report(store, A, _checkout(A))
    in_b = await _report(store, B, _checkout(B))
    assert in_a != in_b
    for shop, own, other in ((A, in_a, in_b), (B, in_b, in_a)):
        assert await store.get(own, shop_id=shop) is not None
        assert await store.get(other, shop_id=shop) is None
        page = await store.query(parse_query({}), shop_id=shop)
        assert [c.to_json_dict()["id"] for c in page.entries] == [own] and page.total == 1
        found = await store.find_id(shop_id=shop, checkout_id="co-1001", cart_id=None)
        assert found == own
    assert (await store.query(parse_query({}), shop_id=DEFAULT_SHOP)).total == 0
    async with store.engine.connect() as conn:
        shops = dict((await conn.execute(select(events.c.entity_id, events.c.shop_id))).all())
    assert shops == {in_a: A, in_b: B}  # each `created` event is its checkout's shop's


async def test_buyer_reads_and_writes_stay_in_their_shop(store: SqlStore):
    in_a = await _report(store, A, _checkout(A))
    other_in_a = await _report(store, A, _checkout(A, "co-2002"))
    in_b = await _report(store, B, _checkout(B))
    buyer = BuyerIdentity(email="ada@example.com")

    recovered, stopped = await store.recover_buyer(buyer, "o-1", NOW + HOUR, shop_id=B)

    assert (recovered, stopped) == (in_b, [])  # shop A's checkouts of the same buyer go on
    for open_one in (in_a, other_in_a):
        found = await store.get(open_one)
        assert found is not None and found.stop_reason is None and found.order_id is None
    assert await store.recover_buyer(buyer, "o-2", NOW, shop_id="shop-c") == (None, [])
    by_shop = {shop: await checkout_stats(store, None, None, shop_id=shop) for shop in (A, B)}
    assert (by_shop[A].abandoned, by_shop[A].recovered) == (2, 0)
    assert (by_shop[B].abandoned, by_shop[B].recovered) == (1, 1)


async def test_tasks_are_listed_in_their_checkouts_shop(store: SqlStore):
    in_a = await _report(store, A, _checkout(A))
    task = StaffTask(
        checkout_id=in_a,
        title="Call the buyer",
        assignee="ops",
        due_date=NOW + HOUR,
        link="https://x.example",
        created_date=NOW,
    )
    entry = ActivityEntry(type=ActivityType.TASK_CREATED, created_date=NOW, step=1)
    await store.create_task("task-key", task, entry)
    assert [t.checkout_id for t in await store.list_tasks(shop_id=A)] == [in_a]
    assert await store.list_tasks(shop_id=B) == []
    assert await store.list_tasks(checkout_id=in_a, shop_id=B) == []


async def test_an_unsubscribe_suppresses_the_address_in_its_shop_only(store: SqlStore):
    in_a = await _report(store, A, _checkout(A))
    in_b = await _report(store, B, _checkout(B))

    told = await store.unsubscribe("ADA@example.com", NOW, shop_id=A)

    assert told == [in_a]
    assert (await store.check_send(in_a, "k-a", NOW)).suppressed
    in_b_state = await store.check_send(in_b, "k-b", NOW)
    assert not in_b_state.suppressed and in_b_state.claim is not None


async def test_the_frequency_cap_counts_the_sends_of_the_same_shop(store: SqlStore):
    first_a = await _report(store, A, _checkout(A))
    second_a = await _report(store, A, _checkout(A, "co-2002"))
    in_b = await _report(store, B, _checkout(B))
    day = timedelta(days=1)
    assert (await store.begin_send(first_a, "k-1", "<m1@x>", NOW, day)).claim is not None

    assert (await store.check_send(second_a, "k-2", NOW + HOUR, day)).capped_until == NOW + day
    other_shop = await store.check_send(in_b, "k-3", NOW + HOUR, day)
    assert other_shop.capped_until is None and other_shop.claim is not None


async def test_a_suppression_without_a_shop_holds_in_every_shop(store: SqlStore):
    # The platform-wide list (hard bounces): a row whose shop is NULL.
    ids = [await _report(store, shop, _checkout(shop)) for shop in (A, B, DEFAULT_SHOP)]
    async with store.engine.begin() as conn:
        await conn.execute(
            suppressions.insert().values(
                shop_id=None, address_key=address_key("ada@example.com"), created_date=NOW
            )
        )
    for checkout_id in ids:
        start = await store.begin_send(checkout_id, f"k-{checkout_id}", "<m@x>", NOW)
        assert start.suppressed and start.claim is None
    other = await _report(
        store, A, _checkout(A, "co-3003", buyerInfo={"email": "b@x.example", "visitorId": "v-2"})
    )
    assert not (await store.check_send(other, "k-other", NOW)).suppressed


def _to_0006_with_rows(connection: Connection) -> None:
    # Plain SQL: the tables as 0006 left them (the Table objects name shop_id).
    command.upgrade(alembic_config(connection), "0006")
    snapshot = sample_checkout().model_dump_json(by_alias=True, exclude_none=True)
    connection.execute(
        text(
            "INSERT INTO checkouts (id, status, created_date, updated_date, snapshot, holdout) "
            "VALUES ('c-old', 'ABANDONED', :at, :at, :snapshot, false)"
        ),
        {"at": NOW.replace(tzinfo=None), "snapshot": snapshot},
    )
    connection.execute(
        text("INSERT INTO suppressions (address_key, created_date) VALUES ('abc', :at)"),
        {"at": NOW.replace(tzinfo=None)},
    )
    connection.execute(
        text(
            "INSERT INTO api_keys (id, name, secret_hash, scopes, created_date) "
            "VALUES ('k1', 'old', 'h', 'abandoned-checkouts:read', :at)"
        ),
        {"at": NOW.replace(tzinfo=None)},
    )


async def test_the_migration_puts_existing_rows_in_the_default_shop(database_url: str):
    before = SqlStore.from_url(database_url)
    try:
        async with before.engine.begin() as conn:
            await conn.run_sync(_to_0006_with_rows)
    finally:
        await before.close()
    store = SqlStore.from_url(database_url)
    try:
        await store.create_schema()
        async with store.engine.connect() as conn:
            revision = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            shop = await conn.scalar(select(checkouts.c.shop_id).where(checkouts.c.id == "c-old"))
            suppressed = (await conn.execute(select(suppressions))).all()
            key_shop = await conn.scalar(text("SELECT shop_id FROM api_keys WHERE id = 'k1'"))
            default_row = await conn.scalar(text("SELECT id FROM shops"))
        assert revision == head_revision()
        assert shop == DEFAULT_SHOP and key_shop == DEFAULT_SHOP and default_row == DEFAULT_SHOP
        assert [(s.shop_id, s.address_key) for s in suppressed] == [(DEFAULT_SHOP, "abc")]
        assert await store.get("c-old", shop_id=DEFAULT_SHOP) is not None
        assert await store.get("c-old", shop_id=A) is None
    finally:
        await store.close()
