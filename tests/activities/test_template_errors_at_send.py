"""A template that fails at send time fails the step for good, at once: retrying a pure render
gives the same error. Emails say `template_error`; nothing reaches SMTP or the staff's hook."""

from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.email_message import Sender
from activities.notification import NotificationActivities
from activities.rendering import TemplateRenderer
from activities.smtp_pool import SmtpPool
from activities.tasks import TaskActivities
from domain.activity import ActivityType, NotSentReason
from domain.flow import step_key, workflow_id_for
from domain.policy import EmailStep, NotificationStep, TaskStep
from domain.smtp import SmtpConfig
from domain.steps import (
    PERMANENT_EMAIL_FAILURE,
    EmailStepRequest,
    NotificationStepRequest,
    TaskStepRequest,
)
from store.sql import SqlStore
from tests.support import SmtpServer, sample_checkout
from tests.template_files import write_template_set

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
WORKFLOW_ID = workflow_id_for("c-t")


async def _reported(store: SqlStore) -> None:
    checkout = sample_checkout().model_copy(update={"id": "c-t", "created_date": NOW})
    await store.save_reported(checkout, NOW)


def _common(step_index: int) -> dict[str, object]:
    return {
        "checkout_id": "c-t",
        "workflow_id": WORKFLOW_ID,
        "step_index": step_index,
        "key": step_key(WORKFLOW_ID, step_index),
        "at": NOW,
    }


async def test_email_template_error_is_permanent_and_frees_the_claim(
    store: SqlStore, smtp: SmtpServer, tmp_path: Path
):
    write_template_set(tmp_path, "email", "promo", "en", body_txt="Hi\n{{ first_name }} {{ oops }}")
    await _reported(store)
    request = EmailStepRequest(
        **_common(0), step=EmailStep(action="email", template="promo", delay="1h")
    )
    pool = SmtpPool(SmtpConfig(host="127.0.0.1", port=smtp.port, pool_size=1))
    email = EmailActivities(
        store, pool, TemplateRenderer(tmp_path), Sender("Shop <r@shop.test>"), "Test Shop"
    )
    try:
        with pytest.raises(ApplicationError) as raised:
            await ActivityEnvironment().run(email.send_recovery_email, request)

        assert raised.value.type == PERMANENT_EMAIL_FAILURE
        assert raised.value.non_retryable
        assert raised.value.details == (NotSentReason.TEMPLATE_ERROR,)
        assert raised.value.details == ("template_error",)
        assert "email/promo/en/body.txt line 2: 'oops' is undefined" in raised.value.message
        assert smtp.handler.messages == []

        # The claim went back: once the template is fixed, the same step sends, once.
        write_template_set(tmp_path, "email", "promo", "en")
        outcome = await ActivityEnvironment().run(email.send_recovery_email, request)
        assert outcome.type == ActivityType.EMAIL_SENT
        assert len(smtp.handler.messages) == 1
    finally:
        await pool.close()


@pytest.fixture
def hook() -> Iterator[tuple[list[str], str]]:
    """A real HTTP receiver on loopback, as a shop's hook; it keeps the paths it was sent."""
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    yield received, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


async def test_notification_template_error_is_not_retried(store: SqlStore, tmp_path: Path, hook):
    received, url = hook
    write_template_set(tmp_path, "notification", "staff_alert", "en", message_txt="{{ nope }}")
    await _reported(store)
    request = NotificationStepRequest(
        **_common(1), step=NotificationStep(action="notification", url=url, delay="2h")
    )
    async with httpx.AsyncClient() as http:
        activities = NotificationActivities(
            store, http, TemplateRenderer(tmp_path), "Test Shop", None
        )
        with pytest.raises(ApplicationError) as raised:
            await ActivityEnvironment().run(activities.send_staff_notification, request)

    assert raised.value.type == "TemplateError"
    assert raised.value.non_retryable
    assert "notification/staff_alert/en/message.txt line 1: 'nope' is undefined" in str(
        raised.value
    )
    assert received == []


async def test_task_template_error_is_not_retried(store: SqlStore, tmp_path: Path):
    write_template_set(tmp_path, "task", "follow_up", "en", title_txt="Call {{ buyer.phone }}")
    await _reported(store)
    request = TaskStepRequest(
        **_common(2), step=TaskStep(action="task", assignee="sales", delay="3d")
    )
    tasks = TaskActivities(store, TemplateRenderer(tmp_path), "Test Shop", "/w/{workflow_id}")

    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(tasks.create_staff_task, request)

    assert raised.value.type == "TemplateError"
    assert raised.value.non_retryable
    assert "task/follow_up/en/title.txt line 1: 'buyer' is undefined" in str(raised.value)
    assert await store.list_tasks() == []
