"""A running service with the dashboard, as the dev stack runs it: real Temporal, a worker, the
embedded SMTP server keeping mail in a Maildir, and the HTTP service on a loopback port."""

from contextlib import AbstractAsyncContextManager
from pathlib import Path

from temporalio.client import Client

from domain.policy import parse_policy
from store.sql import SqlStore
from tests.support import RunningStack

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

DashboardStack = RunningStack


def dashboard_stack(
    client: Client, store: SqlStore, data_dir: Path, *, dev: bool = True
) -> AbstractAsyncContextManager[DashboardStack]:
    """`dev`: serve the mailbox page, as the dev stack does; production serves none."""
    return DashboardStack.running(
        client,
        store=store,
        data_dir=data_dir,
        maildir=data_dir / "mail",
        policy=POLICY,
        serve=True,
        mailbox_page=dev,
        key_names="dashboard",
        temporal_ui_url="http://temporal-ui.test:8233",
    )
