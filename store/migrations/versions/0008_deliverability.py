"""Deliverability and channels: what a relay said later about a sent email, the reason of a
suppression, and the channel and variant of an entry.

- activities.channel: `sms` on an SMS step's NOTIFICATION_SENT (NULL: the type's own channel);
- activities.variant: the A/B variant an email step used (NULL: the step has none);
- activities.outcome / outcome_date: a later `bounced` or `complained` on an EMAIL_SENT entry,
  found through its Message-ID (sent_log.message_id, now indexed);
- suppressions.reason: why the address (or phone number) is suppressed; NULL rows are the
  unsubscribes made before this revision;
- email_feedback: every bounce and complaint a relay reported, hard, soft or complaint, with its
  shop, checkout and step when the Message-ID was ours. It keeps no address, only its key.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.add_column(sa.Column("channel", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("variant", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("outcome_date", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("suppressions") as batch:
        batch.add_column(sa.Column("reason", sa.String(length=32), nullable=True))
    op.create_index("ix_sent_log_message_id", "sent_log", ["message_id"], unique=False)
    op.create_table(
        "email_feedback",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        sa.Column("checkout_id", sa.String(length=64), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("shop_id", sa.String(length=64), nullable=True),
        sa.Column("occurred_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_date", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_email_feedback_checkout_id", "email_feedback", ["checkout_id"])
    op.create_index("ix_email_feedback_shop_kind", "email_feedback", ["shop_id", "kind", "step"])


def downgrade() -> None:
    op.drop_index("ix_email_feedback_shop_kind", table_name="email_feedback")
    op.drop_index("ix_email_feedback_checkout_id", table_name="email_feedback")
    op.drop_table("email_feedback")
    op.drop_index("ix_sent_log_message_id", table_name="sent_log")
    with op.batch_alter_table("suppressions") as batch:
        batch.drop_column("reason")
    with op.batch_alter_table("activities") as batch:
        batch.drop_column("outcome_date")
        batch.drop_column("outcome")
        batch.drop_column("variant")
        batch.drop_column("channel")
