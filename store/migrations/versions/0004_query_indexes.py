"""Indexes for the query patterns: status and date ranges sorted by createdDate, recovered in a
date range, orderId (now sortable), email whatever its case and by prefix, a page's activities.

The composite indexes end with `id`, the sort's last tie-breaker, then deleted_date (which every
query tests: the capped COUNT reads the index alone); they replace the single-column
indexes on created_date and status (leading columns of the new ones) and on
activities.checkout_id.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COMPOSITE = {
    "ix_checkouts_created_date_id": ["created_date", "id", "deleted_date"],
    "ix_checkouts_status_created_date_id": ["status", "created_date", "id", "deleted_date"],
    "ix_checkouts_status_recovered_date_id": ["status", "recovered_date", "id", "deleted_date"],
    "ix_checkouts_order_id_id": ["order_id", "id"],
}
_EMAIL = "ix_checkouts_buyer_email"


def upgrade() -> None:
    for name, columns in _COMPOSITE.items():
        op.create_index(name, "checkouts", columns, unique=False)
    op.create_index("ix_checkouts_buyer_email_lower", "checkouts", [sa.text("lower(buyer_email)")])
    if op.get_bind().dialect.name == "postgresql":
        # The email index with the pattern operator class, for $startsWith (see store.schema).
        op.drop_index(_EMAIL, table_name="checkouts")
        op.create_index(
            _EMAIL, "checkouts", ["buyer_email"], postgresql_ops={"buyer_email": "text_pattern_ops"}
        )
    op.drop_index("ix_checkouts_created_date", table_name="checkouts")
    op.drop_index("ix_checkouts_status", table_name="checkouts")
    op.create_index(
        "ix_activities_checkout_created_seq",
        "activities",
        ["checkout_id", "created_date", "seq"],
        unique=False,
    )
    op.drop_index("ix_activities_checkout_id", table_name="activities")


def downgrade() -> None:
    op.create_index("ix_activities_checkout_id", "activities", ["checkout_id"], unique=False)
    op.drop_index("ix_activities_checkout_created_seq", table_name="activities")
    op.create_index("ix_checkouts_status", "checkouts", ["status"], unique=False)
    op.create_index("ix_checkouts_created_date", "checkouts", ["created_date"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(_EMAIL, table_name="checkouts")
        op.create_index(_EMAIL, "checkouts", ["buyer_email"], unique=False)
    op.drop_index("ix_checkouts_buyer_email_lower", table_name="checkouts")
    for name in reversed(_COMPOSITE):
        op.drop_index(name, table_name="checkouts")
