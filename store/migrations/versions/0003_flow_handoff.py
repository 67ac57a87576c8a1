"""The hand-off between the store and Temporal: a command outbox, flow state and stop reasons.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flow_commands",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("checkout_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("created_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("flow_commands", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flow_commands_checkout_id"), ["checkout_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_flow_commands_created_date"), ["created_date"], unique=False
        )

    with op.batch_alter_table("checkouts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stop_reason", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("stopped_date", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("flow_state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("on_purchase", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("flow_closed_date", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("checkouts", schema=None) as batch_op:
        batch_op.drop_column("flow_closed_date")
        batch_op.drop_column("on_purchase")
        batch_op.drop_column("flow_state")
        batch_op.drop_column("stopped_date")
        batch_op.drop_column("stop_reason")

    with op.batch_alter_table("flow_commands", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flow_commands_created_date"))
        batch_op.drop_index(batch_op.f("ix_flow_commands_checkout_id"))

    op.drop_table("flow_commands")
