"""Alembic's entry point: migrates the connection that store.migrate hands over (online only)."""

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext

from store.migrate import log_applied
from store.schema import UtcDateTime, metadata


def render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # A migration keeps the column's database type, not the application's converter: the DDL is
    # the same, and the migration stays as written when UtcDateTime changes or moves.
    if kind == "type" and isinstance(obj, UtcDateTime):
        return f"{autogen_context.opts['sqlalchemy_module_prefix']}DateTime(timezone=True)"
    return False  # Alembic's own rendering


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through store.migrate, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters a table by copying it; batch mode writes migrations that do that there.
    render_as_batch=connection.dialect.name == "sqlite",
    # Alembic compares UtcDateTime by its implementation type, DateTime(timezone=True).
    compare_type=True,
    render_item=render_item,
    on_version_apply=log_applied,
)
with context.begin_transaction():
    context.run_migrations()
