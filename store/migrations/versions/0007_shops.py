"""Shops: the shops table (with the `default` shop), a shop on every row that is read on its own,
the shop in the query indexes, and suppressions per shop.

Existing rows land in `default`, so a single-shop deployment changes nothing. Tables only ever
read through their checkout (activities, sent_log, sent_emails, flow_commands) take no shop.
api_keys.shop_id NULL is a platform key; suppressions.shop_id NULL suppresses the address in
every shop (hard bounces), so the suppressions table gets a surrogate key and a unique
(shop_id, address_key) instead of its address_key primary key.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEFAULT = "default"
_SHOP_ROWS = ("subscriptions", "events", "tasks", "coupons", "email_sends", "link_clicks")
# The query indexes of 0004 with the shop after their columns (see store.schema: led by the shop,
# they would take the lookups' place in both planners); the lookups' indexes stay as they are.
_COMPOSITE = {
    "ix_checkouts_created_date_id": ["created_date", "id", "deleted_date"],
    "ix_checkouts_status_created_date_id": ["status", "created_date", "id", "deleted_date"],
    "ix_checkouts_status_recovered_date_id": ["status", "recovered_date", "id", "deleted_date"],
    "ix_checkouts_order_id_id": ["order_id", "id"],
}


def _shop_column(nullable: bool = False) -> sa.Column[str]:
    return sa.Column("shop_id", sa.String(length=64), server_default=_DEFAULT, nullable=nullable)


def _drop_checkout_indexes() -> None:
    for name in _COMPOSITE:
        op.drop_index(name, table_name="checkouts")


def upgrade() -> None:
    shops = op.create_table(
        "shops",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("settings", sa.Text(), server_default="{}", nullable=False),
        sa.Column("created_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_date", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # as store.schema.UtcDateTime keeps it on SQLite
    op.bulk_insert(
        shops,
        [
            {
                "id": _DEFAULT,
                "name": _DEFAULT,
                "settings": "{}",
                "created_date": now,
                "updated_date": now,
            }
        ],
    )

    op.add_column("checkouts", _shop_column())
    _drop_checkout_indexes()
    for name, columns in _COMPOSITE.items():
        op.create_index(name, "checkouts", [*columns, "shop_id"], unique=False)

    op.add_column("api_keys", _shop_column(nullable=True))
    for table in _SHOP_ROWS:
        op.add_column(table, _shop_column())
    op.create_index("ix_subscriptions_shop_id", "subscriptions", ["shop_id"], unique=False)
    op.drop_index("ix_email_sends_address_key", table_name="email_sends")
    op.create_index(
        "ix_email_sends_shop_address", "email_sends", ["shop_id", "address_key", "sent_at"]
    )

    _rename_old_suppressions()
    op.create_table(
        "suppressions",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("shop_id", sa.String(length=64), nullable=True),
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("created_date", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(
        "ux_suppressions_shop_address", "suppressions", ["shop_id", "address_key"], unique=True
    )
    op.execute(
        "INSERT INTO suppressions (shop_id, address_key, created_date) "
        f"SELECT '{_DEFAULT}', address_key, created_date FROM suppressions_0006"
    )
    op.drop_table("suppressions_0006")


def _rename_old_suppressions() -> None:
    op.rename_table("suppressions", "suppressions_0006")
    if op.get_bind().dialect.name == "postgresql":
        # A renamed table keeps its constraint's name, which the new table's key would take.
        op.execute(
            "ALTER TABLE suppressions_0006 RENAME CONSTRAINT suppressions_pkey "
            "TO suppressions_0006_pkey"
        )


def downgrade() -> None:
    # Back to one list: a shop's suppressions all count, the platform-wide ones are kept too.
    _rename_old_suppressions_back()
    op.create_table(
        "suppressions",
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("created_date", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address_key"),
    )
    op.execute(
        "INSERT INTO suppressions (address_key, created_date) "
        "SELECT address_key, MIN(created_date) FROM suppressions_0007 GROUP BY address_key"
    )
    op.drop_table("suppressions_0007")

    op.drop_index("ix_email_sends_shop_address", table_name="email_sends")
    op.create_index("ix_email_sends_address_key", "email_sends", ["address_key"], unique=False)
    op.drop_index("ix_subscriptions_shop_id", table_name="subscriptions")
    for table in (*_SHOP_ROWS, "api_keys"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("shop_id")

    _drop_checkout_indexes()
    # SQLite's batch copy of the table cannot carry an expression index: made again after it.
    op.drop_index("ix_checkouts_buyer_email_lower", table_name="checkouts")
    with op.batch_alter_table("checkouts") as batch_op:
        batch_op.drop_column("shop_id")
    op.create_index("ix_checkouts_buyer_email_lower", "checkouts", [sa.text("lower(buyer_email)")])
    for name, columns in _COMPOSITE.items():
        op.create_index(name, "checkouts", columns, unique=False)
    op.drop_table("shops")


def _rename_old_suppressions_back() -> None:
    op.drop_index("ux_suppressions_shop_address", table_name="suppressions")
    op.rename_table("suppressions", "suppressions_0007")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE suppressions_0007 RENAME CONSTRAINT suppressions_pkey "
            "TO suppressions_0007_pkey"
        )
