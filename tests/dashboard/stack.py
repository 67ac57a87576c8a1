"""A running service with the dashboard, as the dev stack runs it: real Temporal, a worker, the
embedded SMTP server keeping mail in a Maildir, and the HTTP service on a loopback port."""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from devstack.mailbox import EmbeddedSmtpServer
from domain.access import Scope
from domain.policy import parse_policy
from store.api_keys import ApiKeyStore
from store.sql import SqlStore
from tests.ports import free_port
from tests.support import engine_settings, running_engine
from workers.api_server import build_app, serving
from workers.settings import Settings

# An email a second after the report, a staff task a second later; the last email never comes.
POLICY = parse_policy(
    {
        "name": "dashboard-test",
        "listen_window": "1h",
        "frequency_cap": {"window": "0s"},
        "steps": [
            {"delay": "1s", "action": "email", "template": "reminder"},
            {"delay": "2s", "action": "task", "assignee": "sales", "template": "follow_up"},
            {"delay": "1h", "action": "email", "template": "last_chance"},
        ],
    },
    "test",
)


@dataclass(frozen=True)
class DashboardStack:
    base_url: str
    store: SqlStore
    settings: Settings
    maildir: Path
    read_key: str
    manage_key: str


@contextlib.asynccontextmanager
async def dashboard_stack(
    client: Client, store: SqlStore, data_dir: Path, *, dev: bool = True
) -> AsyncIterator[DashboardStack]:
    """`dev`: serve the mailbox page, as the dev stack does; production serves none."""
    port, smtp_port = free_port(), free_port()
    maildir = data_dir / "mail"
    settings = engine_settings(
        smtp_port,
        data_dir=data_dir,
        api_port=port,
        public_url=f"http://127.0.0.1:{port}",
        temporal_ui_url="http://temporal-ui.test:8233",
    )
    keys = ApiKeyStore(store.engine)
    _, read_key = await keys.create("dashboard reader", frozenset({Scope.READ}))
    _, manage_key = await keys.create("dashboard manager", frozenset({Scope.MANAGE}))
    smtp = EmbeddedSmtpServer("127.0.0.1", smtp_port, maildir)
    smtp.start()
    try:
        async with running_engine(client, store, settings) as service:
            app = build_app(settings, service, store, POLICY, maildir if dev else None)
            async with serving(app, "127.0.0.1", port):
                yield DashboardStack(
                    settings.public_url, store, settings, maildir, read_key, manage_key
                )
    finally:
        smtp.stop()
