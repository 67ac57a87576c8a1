"""`checkout-recovery health`: can a worker with these settings do its work right now?

It checks what a worker needs, from the worker's own settings: Temporal answers its health
check, the store answers a query, no command has waited for Temporal longer than
CHECKOUT_RECOVERY_READINESS_BACKLOG_SECONDS, and the SMTP relay takes a connection (EHLO, TLS and
login as configured, NOOP). Exit code 0 when all pass, 1 otherwise, with one line per check
naming what failed: a Kubernetes `exec` readiness probe, a container HEALTHCHECK, or an
operator's first question. It never changes anything (no migration, no mail).
"""

import json
from datetime import timedelta
from typing import Annotated

import typer

from activities.smtp_pool import SmtpPool
from cli.support import run_command
from cli.support import settings_or_fail as _settings
from service.handoff import Handoff
from service.readiness import Readiness, backlog_check, run_checks, store_check, temporal_check
from store.sql import SqlStore
from workers.temporal_client import connect


def health(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON (as the API's /readyz).")
    ] = False,
) -> None:
    """Check Temporal, the store, the hand-off backlog and SMTP; exit 1 naming what failed."""
    settings = _settings()

    async def run() -> Readiness:
        # Not open_store: a probe must not create or migrate the schema.
        store = SqlStore.from_url(settings.store_url)
        try:
            client = await connect(settings, lazy=True)
            handoff = Handoff(client, store.commands, settings.task_queue)
            pool = SmtpPool(settings.smtp_config())
            max_age = timedelta(seconds=settings.readiness_backlog_seconds)

            async def smtp() -> str:
                await pool.probe()
                return f"{settings.smtp_host}:{settings.smtp_port} answered"

            return await run_checks(
                {
                    "temporal": temporal_check(client),
                    "store": store_check(handoff),
                    "handoff_backlog": backlog_check(handoff, max_age),
                    "smtp": smtp,
                }
            )
        finally:
            await store.close()

    readiness = run_command(run())
    if as_json:
        typer.echo(json.dumps(readiness.to_json(), indent=2))
    else:
        for check in readiness.checks:
            typer.echo(f"{'ok  ' if check.ok else 'FAIL'}  {check.name:<16} {check.detail}")
    if not readiness.ok:
        typer.echo(f"not ready: {', '.join(readiness.failed)} failed", err=True)
        raise typer.Exit(1)
