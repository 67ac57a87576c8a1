"""Schema migrations with Alembic, configured in code so that nothing depends on the directory.

`upgrade_to_head` runs at every start (SqlStore.create_schema); it is a no-op on a current
database. Processes that start together against one database (API and worker replicas, the CLI)
migrate one after the other: the first takes a lock (a PostgreSQL advisory lock, SQLite's write
lock), checks the version and upgrades inside it; the others wait for it, then find the schema
current and apply nothing. Each migration applied logs one line (MIGRATION_APPLIED).

New migration: edit store/schema.py, run `python -m store.migrate revision -m "what
changes"`, then check and edit the generated file under store/migrations/versions.
"""

import argparse
import asyncio
import contextlib
import fcntl
import logging
import sys
import tempfile
from collections.abc import AsyncIterator, Collection, Mapping
from pathlib import Path
from typing import IO, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_APPLIED = "Store migration applied"
VERSION_TABLE = "alembic_version"
BASELINE = "0001"
"""The revision whose schema `metadata.create_all` made before the store had migrations."""
_PG_MIGRATION_LOCK = 0x636B7265636F76  # any fixed 64-bit key, the same in every process


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration without an alembic.ini; env.py migrates `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def upgrade_to_head(engine: AsyncEngine) -> None:
    # One transaction for the whole upgrade (both databases roll DDL back), so a failed
    # migration leaves the schema as it was.
    async with _sqlite_file_lock(engine), engine.begin() as conn:
        await conn.run_sync(_upgrade)


@contextlib.asynccontextmanager
async def _sqlite_file_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Serialise SQLite migrations across processes before any connection opens.

    A new SQLite file is not yet in WAL mode; a second part connecting while the first one
    creates the tables wants to switch it to WAL and both can wait on each other until the busy
    timeout runs out. A lock file beside the database keeps the second part out until the first
    has committed. (flock also excludes a second descriptor in the same process.)
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    handle = await asyncio.to_thread(_locked_file, Path(f"{database}.migrate-lock"))
    try:
        yield
    finally:
        handle.close()  # closing the descriptor releases the lock


def _locked_file(path: Path) -> IO[str]:
    handle = path.open("a")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


def _upgrade(connection: Connection) -> None:
    _lock_for_migration(connection)
    config = alembic_config(connection)
    tables = set(inspect(connection).get_table_names())
    if "checkouts" in tables and VERSION_TABLE not in tables:
        # A store made before migrations existed (by metadata.create_all) already holds the
        # baseline schema but has no alembic_version table: record the baseline instead of
        # failing on CREATE TABLE, then apply whatever came after it.
        command.stamp(config, BASELINE)
    command.upgrade(config, "head")


def log_applied(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    """Alembic's on_version_apply hook: one line per migration this process applied."""
    if step.is_upgrade:
        logger.info("%s: %s", MIGRATION_APPLIED, step.up_revision_id)


def _lock_for_migration(connection: Connection) -> None:
    """Make parts that start together (worker replicas, API, CLI) migrate one after the other;
    the later ones then find the database current. Held until the transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    elif connection.dialect.name == "sqlite":
        # The sqlite3 module opens no transaction before DDL by itself; this one takes the write
        # lock at once, and the store's busy timeout makes the others wait for it.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def main() -> None:
    """`python -m store.migrate revision -m MESSAGE`: a new migration, autogenerated against a
    scratch SQLite database at head, from the difference to store/schema.py."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("action", choices=["revision"])
    parser.add_argument("-m", "--message", required=True)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{scratch}/scratch.db")
        with engine.begin() as connection:
            config = alembic_config(connection)
            _format_with_ruff(config)
            command.upgrade(config, "head")
            command.revision(config, message=arguments.message, autogenerate=True)
        engine.dispose()


def _format_with_ruff(config: Config) -> None:
    """Have Alembic pass the new file through ruff, so that `./run lint` accepts it as written."""
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        return
    hooks = {"fix": "check --fix --quiet", "format": "format --quiet"}
    config.set_section_option("post_write_hooks", "hooks", ", ".join(hooks))
    for name, options in hooks.items():
        config.set_section_option("post_write_hooks", f"{name}.type", "exec")
        config.set_section_option("post_write_hooks", f"{name}.executable", str(ruff))
        config.set_section_option(
            "post_write_hooks", f"{name}.options", f"{options} REVISION_SCRIPT_FILENAME"
        )


if __name__ == "__main__":
    main()
