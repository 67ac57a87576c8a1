"""The copy of each sent recovery email, and the index of the not-sent-reason filter.

sent_emails keeps, per EMAIL_SENT entry (same key), the email as the buyer received it, zlib-
compressed (store.sent_emails); ix_activities_type_reason finds the checkouts with an email not
sent for a reason (store.checkout_query), with the pattern operator class on PostgreSQL for the
reason's bytewise prefix range.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sent_emails",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("checkout_id", sa.String(length=64), nullable=False),
        sa.Column("created_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_sent_emails_checkout_id", "sent_emails", ["checkout_id"], unique=False)
    op.create_index(
        "ix_activities_type_reason",
        "activities",
        ["type", "reason", "checkout_id"],
        unique=False,
        postgresql_ops={"reason": "text_pattern_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_activities_type_reason", table_name="activities")
    op.drop_index("ix_sent_emails_checkout_id", table_name="sent_emails")
    op.drop_table("sent_emails")
