"""A template broken on a running worker, on the time-skipping test server: the email step records
EMAIL_NOT_SENT `template_error` after a single activity attempt, and the flow goes on.

The worker is the real one (open_worker), with a shop's override of the reminder's subject
(CHECKOUT_RECOVERY_TEMPLATES_DIR); the override is broken after the worker started, as an edit on
a live machine would be (jinja reloads changed files), so the start-up check passed and only the
send can notice.
"""

import os
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from activities.rendering import TEMPLATES_DIR
from domain.activity import ActivityType, NotSentReason
from domain.steps import PERMANENT_EMAIL_FAILURE, SEND_EMAIL
from store.sql import SqlStore
from tests.support import SmtpServer, engine_settings, running_engine, sample_checkout
from tests.workflows.scenarios import entries, flow_result, report_now


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """The worker's override folder: the reminder's English subject, as shipped, for now."""
    folder = tmp_path / "overrides"
    subject = Path("email") / "reminder" / "en" / "subject.txt"
    (folder / subject).parent.mkdir(parents=True)
    (folder / subject).write_text((TEMPLATES_DIR / subject).read_text())
    return folder


async def test_a_template_error_at_send_time_is_not_retried(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, templates: Path
) -> None:
    env = time_skipping_env
    settings = engine_settings(smtp.port).model_copy(update={"templates_dir": templates})
    async with running_engine(env.client, store, settings) as service:
        subject = templates / "email" / "reminder" / "en" / "subject.txt"
        subject.write_text("{{ first_name }}, {{ cart.title }}\n")
        # A later mtime than the compiled copy the start-up check left in jinja's cache.
        later = subject.stat().st_mtime + 10
        os.utime(subject, (later, later))

        checkout_id, _ = await report_now(service, env, sample_checkout())
        result = await flow_result(service, env, checkout_id)
        history = await service.handle(checkout_id).fetch_history()

    assert result.steps_run == 3
    assert await entries(store, checkout_id) == [
        (ActivityType.SCHEDULED, None),
        (ActivityType.EMAIL_NOT_SENT, NotSentReason.TEMPLATE_ERROR),
        (ActivityType.EMAIL_SENT, None),
        (ActivityType.TASK_CREATED, None),
    ]
    # Only the second step's email (last_chance) went out.
    subjects = [m["Subject"] for m in smtp.handler.messages]
    assert subjects == ["Last chance: your cart at Test Shop is about to expire"]

    events = list(history.events)
    first_email = next(
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == SEND_EMAIL
    )
    started = [
        e.activity_task_started_event_attributes
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id == first_email
    ]
    failed = [
        e.activity_task_failed_event_attributes
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
        and e.activity_task_failed_event_attributes.scheduled_event_id == first_email
    ]
    # The started event of an activity carries the attempt that ended it: the first.
    assert [s.attempt for s in started] == [1]
    (failure,) = failed
    info = failure.failure.application_failure_info
    assert (info.type, info.non_retryable) == (PERMANENT_EMAIL_FAILURE, True)
    assert "email/reminder/en/subject.txt line 1: 'cart' is undefined" in failure.failure.message
