"""Processes that start together against one fresh database: each migration runs exactly once.

Several OS processes (as API and worker replicas are) each open the store and migrate it, released
at the same instant. Every one must succeed, and the log lines of all of them together must show
each migration of the chain applied once: one process migrated, the others found it current.
"""

import asyncio
import os
import subprocess
import sys
import textwrap

from alembic.script import ScriptDirectory

from store.migrate import MIGRATION_APPLIED, alembic_config, current_revision, head_revision
from store.sql import SqlStore
from tests.support import REPO

PROCESSES = 6
# Imports everything first, then waits for "go" on stdin, so that all migrate at once.
MIGRATOR = textwrap.dedent(
    """
    import asyncio, logging, sys
    from store.sql import SqlStore

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")

    async def main() -> None:
        store = SqlStore.from_url(sys.argv[1])
        try:
            sys.stdin.readline()
            await store.create_schema()
        finally:
            await store.close()

    print("ready", flush=True)
    asyncio.run(main())
    """
)


def _chain() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return sorted(revision.revision for revision in script.walk_revisions())


def _migrate_together(database_url: str) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATOR, database_url],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results: list[subprocess.CompletedProcess[str]] = []
        for process in processes:
            stdout, stderr = process.communicate(timeout=120)
            results.append(
                subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
            )
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


async def test_processes_starting_together_run_each_migration_once(database_url: str) -> None:
    results = await asyncio.to_thread(_migrate_together, database_url)

    failed = [(r.returncode, r.stderr[-600:]) for r in results if r.returncode != 0]
    assert not failed, f"{len(failed)} of {PROCESSES} migrating processes failed: {failed}"
    applied = [
        line.split(f"{MIGRATION_APPLIED}: ", 1)[1].strip()
        for result in results
        for line in result.stderr.splitlines()
        if MIGRATION_APPLIED in line
    ]
    assert sorted(applied) == _chain(), (
        f"migrations applied across {PROCESSES} processes: {sorted(applied)}; "
        f"expected each of {_chain()} once"
    )
    migrating = [r for r in results if MIGRATION_APPLIED in r.stderr]
    assert len(migrating) == 1, f"{len(migrating)} processes applied migrations"

    store = SqlStore.from_url(database_url)
    try:
        assert await current_revision(store.engine) == head_revision()
    finally:
        await store.close()
