"""Reading a flow's workflow history in these tests."""

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from domain.flow import workflow_id_for
from domain.steps import SEND_EMAIL


async def send_attempts(env: WorkflowEnvironment, checkout_id: str) -> int:
    """How often the flow asked for the email activity: a step the flow refuses itself does not."""
    handle = env.client.get_workflow_handle(workflow_id_for(checkout_id))
    return sum(
        1
        for event in (await handle.fetch_history()).events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == SEND_EMAIL
    )
