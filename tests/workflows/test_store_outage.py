"""A flow outlives a store outage: its store writes keep retrying until the database is back.

Workflow-level, on the time-skipping server, with stand-in activities registered under the real
names (the samples-python way): the stand-in for `record_activity` fails as a database that is
down would, for more than an hour of the flow's time, then works.
"""

import uuid
from datetime import datetime, timedelta

from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.activity import ActivityType, NotSentReason
from domain.flow import ClosedBecause, RecoveryInput, RecoveryResult
from domain.policy import parse_policy
from domain.steps import (
    RECORD_ACTIVITY,
    RECORD_RECOVERY,
    RecordActivityRequest,
    RecordRecoveryRequest,
)
from tests.support import sample_checkout
from workers.worker import SANDBOX_RUNNER
from workflows.abandoned_checkout import AbandonedCheckoutWorkflow


class DatabaseDown:
    """`record_activity` as it behaves while the database is away, until `until`."""

    def __init__(self, env: WorkflowEnvironment, until: datetime) -> None:
        self._env = env
        self._until = until
        self.failures = 0
        self.recorded: list[RecordActivityRequest] = []

    @activity.defn(name=RECORD_ACTIVITY)
    async def record_activity(self, request: RecordActivityRequest) -> None:
        if await self._env.get_current_time() < self._until:
            self.failures += 1
            raise ConnectionRefusedError("could not connect to the database server")
        self.recorded.append(request)

    @activity.defn(name=RECORD_RECOVERY)
    async def record_recovery(self, request: RecordRecoveryRequest) -> None:
        raise AssertionError("nothing is recovered in this scenario")


async def test_a_flow_waits_out_an_hour_long_database_outage(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    now = await env.get_current_time()
    # Reported long after abandonment: its one email step only records stale_report, a pure
    # store write, so the write is all the step does.
    policy = parse_policy(
        {
            "name": "store-outage",
            "listen_window": "0s",
            "max_age": "1d",
            "steps": [{"delay": "1h", "action": "email", "template": "reminder"}],
        },
        "test",
    )
    abandoned = now - timedelta(days=3)
    checkout = sample_checkout().model_copy(update={"id": "c-outage", "created_date": abandoned})
    down = DatabaseDown(env, until=now + timedelta(minutes=75))
    task_queue = f"store-outage-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[AbandonedCheckoutWorkflow],
        activities=[down.record_activity, down.record_recovery],
        workflow_runner=SANDBOX_RUNNER,
    ):
        try:
            result: RecoveryResult = await env.client.execute_workflow(
                AbandonedCheckoutWorkflow.run,
                RecoveryInput(
                    checkout=checkout, policy=policy, abandoned_at=abandoned, reported_at=now
                ),
                id=f"abandoned-checkout-c-outage-{uuid.uuid4()}",
                task_queue=task_queue,
            )
        except WorkflowFailureError as err:  # what a bounded retry budget used to end in
            raise AssertionError(f"the flow failed during the outage: {err.cause}") from err
        ended = await env.get_current_time()

    assert result.closed_because == ClosedBecause.WINDOW_ELAPSED
    assert down.failures > 20  # more than the old budget of 20 attempts
    [written] = down.recorded
    assert (written.entry.type, written.entry.reason) == (
        ActivityType.EMAIL_NOT_SENT,
        NotSentReason.STALE_REPORT,
    )
    assert ended >= now + timedelta(minutes=75)
