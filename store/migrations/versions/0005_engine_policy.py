"""The policy the running engine's workers are configured with, for commands that report.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "engine_policy",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("configured_as", sa.String(length=1000), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("published_date", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("engine_policy")
