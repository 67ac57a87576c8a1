"""The baseline of the throughput benchmark: a flow of the engine's shape doing no engine work.

Kept in a module of its own that imports only temporalio, so the workflow sandbox loads it as
cheaply as it loads the engine's workflow module.
"""

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy


@activity.defn
async def noop(step: int) -> int:
    return step


@workflow.defn
class BareFlow:
    """For each step: one durable timer until the step's delay from the start, one activity."""

    @workflow.run
    async def run(self, delays: list[int]) -> int:
        start = workflow.now()
        for index, delay in enumerate(delays):
            remaining = start + timedelta(seconds=delay) - workflow.now()
            if remaining > timedelta(0):
                await workflow.sleep(remaining)
            await workflow.execute_activity(
                noop,
                index,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        return len(delays)
