"""Recovery policy features: consent per entry, holdout and attribution per checkout,
suppressions (unsubscribe), sends per address (frequency cap) and coupons.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 21:53:57.488274
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coupons",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("checkout_id", sa.String(length=64), nullable=False),
        sa.Column("percent_off", sa.Integer(), nullable=True),
        sa.Column("amount_off", sa.String(length=40), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("created_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_date", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("code"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_coupons_checkout_id"), ["checkout_id"], unique=False)

    op.create_table(
        "email_sends",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("checkout_id", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("email_sends", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_email_sends_address_key"), ["address_key"], unique=False
        )

    op.create_table(
        "suppressions",
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("created_date", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address_key"),
    )
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consent", sa.String(length=32), nullable=True))

    with op.batch_alter_table("checkouts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("holdout", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("attribution_window_seconds", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("attribution", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("attributed_step", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("recovered_amount", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("currency", sa.String(length=3), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checkouts", schema=None) as batch_op:
        batch_op.drop_column("currency")
        batch_op.drop_column("recovered_amount")
        batch_op.drop_column("attributed_step")
        batch_op.drop_column("attribution")
        batch_op.drop_column("attribution_window_seconds")
        batch_op.drop_column("holdout")

    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_column("consent")

    op.drop_table("suppressions")
    with op.batch_alter_table("email_sends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_sends_address_key"))

    op.drop_table("email_sends")
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coupons_checkout_id"))

    op.drop_table("coupons")
