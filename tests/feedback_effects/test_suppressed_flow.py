"""The flow's side of a bounce or complaint: the email_suppressed signal (domain.flow) refuses the
next email steps with its reason, ends a frequency-cap wait at once as an unsubscribe does, and
survives a continue-as-new (domain.flow_state.CarriedState keeps it, and reads states carried
before it existed). Decisions on domain.schedule; the wait on the time-skipping server with the
real worker, store and SMTP server."""

from datetime import UTC, datetime, timedelta

from temporalio.testing import WorkflowEnvironment

from domain.activity import ActivityType, NotSentReason
from domain.feedback import FeedbackKind, FeedbackReport
from domain.flow_state import CarriedState
from domain.policy import parse_policy
from domain.schedule import FlowProgress, decide_step
from store.feedback import FeedbackStore
from store.sql import SqlStore
from tests.feedback_effects.history import send_attempts
from tests.support import SmtpServer, engine_settings, eventually, running_engine, sample_checkout
from tests.workflows.scenarios import entries, flow_result, has_entry, report_now

ABANDONED = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
ONE_EMAIL_CAPPED = parse_policy(
    {
        "name": "capped",
        "listen_window": "0s",
        "frequency_cap": {"window": "24h", "when_capped": "defer"},
        "steps": [{"delay": "1h", "action": "email", "template": "reminder"}],
    },
    "test",
)


def _decided(progress: FlowProgress) -> str | None:
    checkout = sample_checkout().model_copy(update={"id": "c-1"})
    at = ABANDONED
    decision = decide_step(
        ONE_EMAIL_CAPPED,
        0,
        checkout,
        abandoned_at=at,
        reported_at=at,
        progress=progress,
    )
    return decision.not_sent_reason


def test_a_suppressed_address_refuses_the_email_step_with_its_reason() -> None:
    assert _decided(FlowProgress()) is None
    assert _decided(FlowProgress(suppressed=NotSentReason.BOUNCED)) == "bounced"
    assert _decided(FlowProgress(suppressed=NotSentReason.COMPLAINED)) == "complained"
    # An unsubscribe said first what this address wants.
    both = FlowProgress(unsubscribed=True, suppressed=NotSentReason.BOUNCED)
    assert _decided(both) == "unsubscribed"


def test_the_carried_state_keeps_the_suppression_and_reads_older_states() -> None:
    checkout = sample_checkout().model_copy(update={"id": "c-1"})
    anchor = ABANDONED
    state = CarriedState(
        checkout=checkout,
        next_step=1,
        steps_run=1,
        progress=FlowProgress(emails_offered=1, suppressed=NotSentReason.COMPLAINED),
        anchor=anchor,
    )
    again = CarriedState.model_validate_json(state.model_dump_json())
    assert again.progress.suppressed is NotSentReason.COMPLAINED

    # A state carried by a run before the signal existed has no such field.
    older = state.model_dump(mode="json")
    del older["progress"]["suppressed"]
    assert CarriedState.model_validate(older).progress == FlowProgress(emails_offered=1)


async def test_a_complaint_ends_a_frequency_cap_wait_at_once(
    time_skipping_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer
) -> None:
    env = time_skipping_env
    async with running_engine(env.client, store, engine_settings(smtp.port)) as service:
        first, _ = await report_now(
            service, env, sample_checkout(checkoutId="first"), ONE_EMAIL_CAPPED
        )
        await env.sleep(timedelta(hours=2))
        await eventually(has_entry(store, first, ActivityType.EMAIL_SENT), what="first email")
        second, _ = await report_now(
            service, env, sample_checkout(checkoutId="second"), ONE_EMAIL_CAPPED
        )
        await env.sleep(timedelta(hours=2))  # the second's step comes due, and waits (capped)
        assert await entries(store, second) == [(ActivityType.SCHEDULED, None)]

        [message] = smtp.handler.messages
        complained_at = await env.get_current_time()
        report = FeedbackReport(
            provider="generic",
            kind=FeedbackKind.COMPLAINT,
            email="ada@example.com",
            message_id=str(message["Message-ID"]),
            occurred_at=complained_at,
        )
        done = await FeedbackStore(store).record_feedback([report], complained_at)
        assert second in done.flows_told

        async def delivered() -> bool:
            return not await store.commands.pending(checkout_ids=[second])

        await eventually(delivered, what="the signal delivered")
        await flow_result(service, env, second)
        attempts = await send_attempts(env, second)

    stored = await store.get(second)
    assert stored is not None
    last = stored.activities[-1]
    assert (last.type, last.reason) == (ActivityType.EMAIL_NOT_SENT, NotSentReason.COMPLAINED)
    # At once: not when the cap's window ended, and without asking the email activity again.
    assert last.created_date - complained_at < timedelta(hours=1)
    assert attempts == 1
    assert len(smtp.handler.messages) == 1
