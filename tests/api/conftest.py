"""The running service most API tests talk to."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from store.sql import SqlStore
from tests.api.stack import Stack, running_stack
from tests.support import SmtpServer


@pytest.fixture
async def stack(
    dev_server_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    async with running_stack(dev_server_env.client, store, smtp, tmp_path) as running:
        yield running
