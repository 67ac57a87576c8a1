"""The task step: a to-do for shop staff, kept in the store."""

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.message_context import checkout_context
from activities.rendering import TemplateRenderer, TemplateRenderError
from activities.step_checkout import staff_step_checkout
from domain.activity import ActivityEntry, ActivityType
from domain.steps import CREATE_TASK, TaskStepRequest
from domain.task import StaffTask
from store.sql import SqlStore
from telemetry import metrics


class TaskActivities:
    def __init__(
        self, store: SqlStore, renderer: TemplateRenderer, shop_name: str, workflow_link: str
    ) -> None:
        """`workflow_link` is a format string with `{workflow_id}`: where staff see the flow."""
        self._store = store
        self._renderer = renderer
        self._shop_name = shop_name
        self._workflow_link = workflow_link

    @activity.defn(name=CREATE_TASK)
    async def create_staff_task(self, request: TaskStepRequest) -> ActivityEntry:
        checkout = await staff_step_checkout(self._store, request, ActivityType.TASK_NOT_CREATED)
        if isinstance(checkout, ActivityEntry):
            metrics.task_step(checkout.reason)
            return checkout
        context = checkout_context(checkout, self._shop_name)
        # Tasks are read by staff, so they use the shop's language rather than the buyer's.
        try:
            title = self._renderer.render_line(
                "task", request.step.template, self._renderer.default_language, context
            )
        except TemplateRenderError as err:
            # Rendering is pure: every retry would fail the same way.
            raise ApplicationError(
                f"template {err}", type="TemplateError", non_retryable=True
            ) from err
        task = StaffTask(
            checkout_id=request.checkout_id,
            title=title,
            assignee=request.step.assignee,
            due_date=request.at + request.step.due_in,
            link=self._workflow_link.format(workflow_id=request.workflow_id),
            created_date=request.at,
        )
        entry = ActivityEntry(
            type=ActivityType.TASK_CREATED, created_date=request.at, step=request.step_index + 1
        )
        await self._store.create_task(request.key, task, entry)
        metrics.task_step()
        return entry
