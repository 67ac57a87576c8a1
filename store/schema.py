"""The store's tables, in SQLAlchemy Core so that SQLite and PostgreSQL share one definition."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import false, func
from sqlalchemy.types import TypeDecorator

from domain.shops import DEFAULT_SHOP


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which keeps no zone) as well."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware one")
        converted = value.astimezone(UTC)
        return converted.replace(tzinfo=None) if dialect.name == "sqlite" else converted

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()


def shop_column(*, nullable: bool = False) -> Column[str]:
    """The shop a row belongs to (domain.shops); rows made before shops exist are `default`."""
    return Column("shop_id", String(64), nullable=nullable, server_default=DEFAULT_SHOP)


shops = Table(
    "shops",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    # The shop's configuration as JSON (store.shops).
    Column("settings", Text, nullable=False, server_default="{}"),
    Column("created_date", UtcDateTime(), nullable=False),
    Column("updated_date", UtcDateTime(), nullable=False),
)

checkouts = Table(
    "checkouts",
    metadata,
    Column("id", String(64), primary_key=True),
    shop_column(),
    Column("checkout_id", String(200), index=True),
    Column("cart_id", String(200), index=True),
    Column("status", String(16), nullable=False),
    # The buyer's identities, copied out of the snapshot so that queries can filter on them.
    Column("buyer_email", String(320)),
    Column("buyer_contact_id", String(200), index=True),
    Column("buyer_visitor_id", String(200), index=True),
    Column("buyer_member_id", String(200), index=True),
    Column("buyer_user_id", String(200), index=True),
    Column("created_date", UtcDateTime(), nullable=False),
    Column("updated_date", UtcDateTime(), nullable=False, index=True),
    Column("recovered_date", UtcDateTime()),
    Column("order_id", String(200)),
    # Set when the buyer's data was erased: the row stays, anonymised, for the statistics, and
    # reads and queries no longer show it.
    Column("deleted_date", UtcDateTime()),
    # Recovery policy facts fixed at report time, so every path that records a recovery (the
    # API, a signal straight to Temporal) attributes it the same way.
    Column("holdout", Boolean, nullable=False, server_default=false()),
    Column("attribution_window_seconds", Integer),
    # How the recovery happened: link / assisted / organic, the step that touched the buyer
    # last, and the total recovered (a decimal string, in the checkout's currency).
    Column("attribution", String(16)),
    Column("attributed_step", Integer),
    Column("recovered_amount", String(40)),
    Column("currency", String(3)),
    # The reported checkout as JSON, without the engine's status and activities.
    Column("snapshot", Text, nullable=False),
    # Set when a checkout still ABANDONED must take no further step (domain.checkout.StopReason).
    Column("stop_reason", String(32)),
    Column("stopped_date", UtcDateTime()),
    # PENDING while the hand-off holds a command for the flow that Temporal has not confirmed;
    # STARTED once it has. NULL: reported before the hand-off existed.
    Column("flow_state", String(16)),
    # The policy's on_purchase at report time: whether recovering this checkout stops the
    # buyer's other flows (NULL: the default, stop_buyer).
    Column("on_purchase", String(16)),
    # The reconciler saw the flow closed, so it need not look again.
    Column("flow_closed_date", UtcDateTime()),
)

# The query patterns' indexes (store.checkout_query): the sort's keys end with `id`, its last
# tie-breaker, so that they serve the ORDER BY and the cursor's keyset comparison alike; then
# deleted_date and shop_id, which every query tests, so that the capped COUNT reads the index
# alone. The shop comes last, not first (migration 0007): led by an equality on the shop, a sort
# index looks cheaper to both planners than a lookup's own index (checkoutId, email, ...), which
# then goes unused; last, every plan stays as it was and the shop is tested in the index.
Index(
    "ix_checkouts_created_date_id",
    checkouts.c.created_date,
    checkouts.c.id,
    checkouts.c.deleted_date,
    checkouts.c.shop_id,
)
Index(
    "ix_checkouts_status_created_date_id",
    checkouts.c.status,
    checkouts.c.created_date,
    checkouts.c.id,
    checkouts.c.deleted_date,
    checkouts.c.shop_id,
)
# Recovered in a date range: the status first, since every recovered checkout has its date (a
# range without the status still uses it, skipping over the two statuses).
Index(
    "ix_checkouts_status_recovered_date_id",
    checkouts.c.status,
    checkouts.c.recovered_date,
    checkouts.c.id,
    checkouts.c.deleted_date,
    checkouts.c.shop_id,
)
Index("ix_checkouts_order_id_id", checkouts.c.order_id, checkouts.c.id, checkouts.c.shop_id)
# The same buyer by email, whatever the case (store.sql's _same_buyer: recover-buyer, stops).
# The lookups' indexes take no shop: a value is selective by itself.
Index("ix_checkouts_buyer_email_lower", func.lower(checkouts.c.buyer_email))
# $startsWith is a bytewise range on the email (store.checkout_query). SQLite's BINARY collation
# is bytewise; on PostgreSQL, whose default collation may not be, the range uses the pattern
# operators (~>=~, ~<~) of this operator class, which serves equality ($eq, $in) as well.
Index(
    "ix_checkouts_buyer_email",
    checkouts.c.buyer_email,
    postgresql_ops={"buyer_email": "text_pattern_ops"},
)

activities = Table(
    "activities",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("checkout_id", String(64), nullable=False),
    Column("key", String(300), nullable=False),
    Column("type", String(32), nullable=False),
    Column("created_date", UtcDateTime(), nullable=False),
    Column("step", Integer),
    Column("reason", String(200)),
    Column("consent", String(32)),
    # `sms` on an SMS step's NOTIFICATION_SENT; NULL: the entry type's own channel.
    Column("channel", String(16)),
    # The A/B variant an email step used; NULL when the step has none.
    Column("variant", String(64)),
    # What the relay said later about a sent email: `bounced` or `complained`.
    Column("outcome", String(16)),
    Column("outcome_date", UtcDateTime()),
    # One entry per step of a flow, however often the step's activity is retried.
    UniqueConstraint("checkout_id", "key", name="uq_activities_checkout_key"),
    # A checkout's entries in their order: a page's newest 20 each come off it without a sort.
    Index("ix_activities_checkout_created_seq", "checkout_id", "created_date", "seq"),
    # The checkouts with an email not sent for a reason (the dashboard's filter, store.
    # checkout_query): the reason, or its start before the details, read off the index alone.
    # The pattern operator class on PostgreSQL, as for the email prefix: the range is bytewise.
    Index(
        "ix_activities_type_reason",
        "type",
        "reason",
        "checkout_id",
        postgresql_ops={"reason": "text_pattern_ops"},
    ),
)

sent_log = Table(
    "sent_log",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("checkout_id", String(64), nullable=False, index=True),
    Column("message_id", String(300), nullable=False, index=True),
    # A row here claims the send of one step's email. The send is confirmed by the step's
    # EMAIL_SENT entry (same key) in `activities`; a claim without one is in doubt.
    Column("created_at", UtcDateTime(), nullable=False),
)

sent_emails = Table(
    "sent_emails",
    metadata,
    # A copy of each recovery email as the buyer received it, keyed by its step's idempotency key
    # (the key of its EMAIL_SENT entry) and erased with the checkout (store.sent_emails).
    Column("key", String(300), primary_key=True),
    Column("checkout_id", String(64), nullable=False, index=True),
    Column("created_date", UtcDateTime(), nullable=False),
    # Headers and bodies as zlib-compressed JSON: an HTML email is 10-30 KB, and bytes keep
    # whatever the message held (PostgreSQL's text refuses NUL).
    Column("content", LargeBinary, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False, unique=True),
    Column("checkout_id", String(64), nullable=False, index=True),
    shop_column(),
    Column("title", String(500), nullable=False),
    Column("assignee", String(200), nullable=False),
    Column("due_date", UtcDateTime(), nullable=False),
    Column("link", String(1000), nullable=False),
    Column("status", String(16), nullable=False, default="OPEN"),
    Column("created_date", UtcDateTime(), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    # The public part of a key; the secret part is kept only as a SHA-256 hash.
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", String(500), nullable=False),  # space-separated scope names
    Column("created_date", UtcDateTime(), nullable=False),
    Column("revoked_date", UtcDateTime()),
    # The shop the key acts for; NULL: a platform key, acting for the shop a request names.
    shop_column(nullable=True),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("url", String(2000), nullable=False),
    # The signing secret must be readable to sign deliveries: it is kept sealed (store.secret_box)
    # with CHECKOUT_RECOVERY_WEBHOOK_SECRET_KEYS; shown once, when the subscription is created,
    # and never in a listing or a log.
    Column("secret", String(200), nullable=False),
    Column("events", String(500), nullable=False),  # space-separated slugs, or "*" for all
    Column("created_date", UtcDateTime(), nullable=False),
    # A subscription receives its own shop's events only.
    shop_column(),
    Index("ix_subscriptions_shop_id", "shop_id"),
)

events = Table(
    "events",
    metadata,
    # The outbox: an event is written in the same transaction as the change it reports, then
    # handed to Temporal for delivery; `dispatched_date` says the hand-over happened.
    Column("id", String(36), primary_key=True),
    Column("entity_id", String(64), nullable=False, index=True),
    Column("slug", String(32), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("event_time", UtcDateTime(), nullable=False),
    Column("entity", Text, nullable=False),
    Column("dispatched_date", UtcDateTime(), index=True),
    shop_column(),
    UniqueConstraint("entity_id", "sequence", name="uq_events_entity_sequence"),
)

flow_commands = Table(
    "flow_commands",
    metadata,
    # The hand-off: what must reach a checkout's flow in Temporal (its start, a signal, deleting
    # its execution), written in the same transaction as the change it belongs to and deleted
    # once Temporal confirmed it. `seq` orders one checkout's commands: they are delivered in turn.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("checkout_id", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(64), nullable=False),
    # The Temporal argument as JSON (it may hold buyer data: erasing the checkout drops it).
    Column("payload", Text),
    Column("created_date", UtcDateTime(), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", String(500)),
)

engine_policy = Table(
    "engine_policy",
    metadata,
    # One row: the policy the workers run, as the last one to start published it, so that a
    # command reporting a checkout (`start`, `import`) gives it the running engine's policy
    # rather than whatever its own shell happens to configure.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("configured_as", String(1000), nullable=False),
    Column("policy", Text, nullable=False),
    Column("published_date", UtcDateTime(), nullable=False),
)

link_clicks = Table(
    "link_clicks",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("checkout_id", String(64), nullable=False, index=True),
    Column("step", Integer),
    Column("clicked_date", UtcDateTime(), nullable=False),
    shop_column(),
)

suppressions = Table(
    "suppressions",
    metadata,
    # Addresses that unsubscribed, as a SHA-256 of the normalised address: the list outlives an
    # erased checkout (it must keep being honoured) without keeping the address itself.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    # An unsubscribe is from one shop's sender; NULL suppresses the address in every shop (a
    # hard bounce: an address that does not exist is not retried by each shop).
    shop_column(nullable=True),
    Column("address_key", String(64), nullable=False),
    # unsubscribed, bounced, complained, sms_stop; NULL: an unsubscribe from before 0008.
    Column("created_date", UtcDateTime(), nullable=False),
    Column("reason", String(32)),
    Index("ux_suppressions_shop_address", "shop_id", "address_key", unique=True),
)

email_feedback = Table(
    "email_feedback",
    metadata,
    # Every bounce and complaint a relay reported (store.feedback). No address, only its key;
    # checkout, step and shop when the Message-ID was one of ours.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("provider", String(32), nullable=False),
    # hard_bounce, soft_bounce or complaint (domain.feedback.FeedbackKind).
    Column("kind", String(16), nullable=False),
    Column("address_key", String(64), nullable=False),
    Column("message_id", String(300)),
    Column("checkout_id", String(64), index=True),
    Column("step", Integer),
    shop_column(nullable=True),
    Column("occurred_date", UtcDateTime(), nullable=False),
    Column("received_date", UtcDateTime(), nullable=False),
    Index("ix_email_feedback_shop_kind", "shop_id", "kind", "step"),
)

email_sends = Table(
    "email_sends",
    metadata,
    # Every claimed recovery email per address, for the frequency cap across checkouts.
    Column("key", String(300), primary_key=True),
    Column("address_key", String(64), nullable=False),
    Column("checkout_id", String(64), nullable=False),
    Column("sent_at", UtcDateTime(), nullable=False),
    # The cap counts the sends of the same shop.
    shop_column(),
    Index("ix_email_sends_shop_address", "shop_id", "address_key", "sent_at"),
)

coupons = Table(
    "coupons",
    metadata,
    Column("code", String(40), primary_key=True),
    # One code per checkout and step: the step's idempotency key.
    Column("key", String(300), nullable=False, unique=True),
    Column("checkout_id", String(64), nullable=False, index=True),
    shop_column(),
    Column("percent_off", Integer),
    Column("amount_off", String(40)),
    Column("currency", String(3)),
    Column("created_date", UtcDateTime(), nullable=False),
    Column("expires_date", UtcDateTime(), nullable=False),
    Column("redeemed_date", UtcDateTime()),
)
