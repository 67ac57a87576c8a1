"""What an operator with a manage key does from the dashboard: recover or cancel a checkout, mark
a task done or open it again.

Each action is two requests: a GET that asks for confirmation (a page of the server's, no script)
and a POST from that page that acts, through the same operations the CLI and the API use
(CheckoutService, TaskStore), then sends the operator back with the outcome in the query string.
Every POST needs a manage-scope session and passes the cross-site checks of api.dashboard.csrf.
Each action that changed something is recorded in the checkout's timeline as an OPERATOR_ACTION
entry naming the key (the API and the CLI record none: they have no operator's name to give).
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError

from api.auth import resolve_shop
from api.dashboard.csrf import FIELD, SAME_ORIGIN_REFERRER, CsrfTokens
from api.dashboard.login import PREFIX, Gate
from domain.access import ApiKey, Scope
from domain.activity import ActivityEntry, ActivityType
from domain.checkout import MAX_ID_LENGTH, AbandonedCheckout, IdText
from domain.task import StaffTask, TaskStatus
from service.checkouts import CheckoutNotFoundError, CheckoutService
from store.tasks import TaskStore

logger = logging.getLogger(__name__)

ShowPage = Callable[..., HTMLResponse]
"""The dashboard's page renderer: show(template, key, status, **context)."""

MAX_REASON_LENGTH = 200
"""The activities.reason column."""
MAX_TASK_ID = 2**63 - 1

OUTCOMES: dict[str, str] = {
    "recovered": "Checkout recovered: its flow stops, no later step runs.",
    "cancelled": "Checkout cancelled: its flow stops, no later step runs.",
    "unchanged": "Nothing to do: the checkout's flow had already stopped.",
    "task-done": "Task marked done.",
    "task-reopened": "Task reopened.",
}
"""What the page an action leads back to says, by the `outcome` in its query string."""

_ORDER_ID: TypeAdapter[str] = TypeAdapter(IdText)

BACK_TO_CHECKOUT = "checkout"
"""`?back=checkout` on a task's action: its confirmation leads back to, and its outcome shows on,
the task's checkout page rather than Open tasks. A name, not an address: nothing in the query
string can send the operator elsewhere."""


def _back_to_checkout(request: Request) -> bool:
    return request.query_params.get("back") == BACK_TO_CHECKOUT


@dataclass(frozen=True)
class ActionPanel:
    """What a page needs to offer actions: whether to show them, and the last one's outcome."""

    can_act: bool
    outcome: str | None


def action_panel(request: Request, key: ApiKey) -> ActionPanel:
    return ActionPanel(
        key.allows(Scope.MANAGE), OUTCOMES.get(request.query_params.get("outcome", ""))
    )


@dataclass(frozen=True)
class _Confirmation:
    title: str
    question: str
    action: str
    back: str
    confirm: str
    order_field: bool = False


class _Actions:
    """The actions' shared steps: checking a post, asking, recording, the pages' addresses."""

    def __init__(
        self, secret: str, store_tasks: TaskStore, service: CheckoutService, show: ShowPage
    ) -> None:
        self.tokens = CsrfTokens(secret)
        self.tasks = store_tasks
        self.service = service
        self.show = show

    def refused(self, key: ApiKey, message: str) -> HTMLResponse:
        return self.show("action_refused.html", key, 403, message=message)

    def no_manage(self, key: ApiKey) -> HTMLResponse | None:
        if key.allows(Scope.MANAGE):
            return None
        return self.refused(
            key,
            f"The key {key.name} ({key.id}) lacks the manage scope ({Scope.MANAGE.value}): "
            "it may look, not act.",
        )

    def not_found(self, key: ApiKey, what: str) -> HTMLResponse:
        return self.show("not_found.html", key, 404, what=what)

    def confirm_page(
        self, request: Request, key: ApiKey, ask: _Confirmation, status: int = 200, **extra: Any
    ) -> HTMLResponse:
        refusal = self.no_manage(key)
        if refusal is not None:
            return refusal
        context: dict[str, Any] = {"order_id": "", "error": None} | extra
        response = self.show(
            "action_confirm.html",
            key,
            status,
            ask=ask,
            csrf_field=FIELD,
            csrf_token=self.tokens.token(request),
            **context,
        )
        # The form's POST must carry an Origin (see api.dashboard.csrf).
        response.headers["Referrer-Policy"] = SAME_ORIGIN_REFERRER
        return response

    async def checked_form(self, request: Request, key: ApiKey) -> dict[str, str] | HTMLResponse:
        """The posted form when the key may act and the post is genuine; else the refusal."""
        refusal = self.no_manage(key)
        if refusal is not None:
            return refusal
        form, problem = await self.tokens.posted_form(request)
        if problem is not None:
            logger.warning("Dashboard post refused as possibly forged (key %s)", key.id)
            return self.refused(key, problem)
        return form

    async def record(self, checkout_id: str, key: ApiKey, done: str) -> None:
        reason = f"{done} by {key.name}"[:MAX_REASON_LENGTH]
        entry = ActivityEntry(
            type=ActivityType.OPERATOR_ACTION, created_date=datetime.now(UTC), reason=reason
        )
        await self.service.store.record_activity(checkout_id, f"operator:{uuid.uuid4().hex}", entry)
        logger.info("Dashboard action %r on checkout %s by key %s", done, checkout_id, key.id)

    async def checkout(self, key: ApiKey, checkout_id: str) -> AbandonedCheckout | HTMLResponse:
        found = await self.service.store.get(
            checkout_id, with_activities=False, shop_id=resolve_shop(key, None)
        )
        return found or self.not_found(key, f"checkout {checkout_id}")

    async def checkout_post(
        self, request: Request, key: ApiKey, checkout_id: str, *, recover: bool
    ) -> Response:
        form = await self.checked_form(request, key)
        if isinstance(form, HTMLResponse):
            return form
        found = await self.checkout(key, checkout_id)
        if isinstance(found, HTMLResponse):
            return found
        order_id = form.get("order_id", "").strip()
        try:
            order_id = _ORDER_ID.validate_python(order_id)
        except ValidationError:
            return self.confirm_page(
                request,
                key,
                checkout_ask(checkout_id, recover=recover),
                400,
                order_id=order_id,
                error=f"An order id is at most {MAX_ID_LENGTH} characters, without control "
                "characters.",
            )
        if found.halted() is not None:
            return RedirectResponse(checkout_url(checkout_id, "unchanged"), status_code=303)
        try:
            if recover:
                await self.service.recover(
                    checkout_id, order_id or None, shop_id=resolve_shop(key, None)
                )
            else:
                await self.service.cancel(checkout_id, shop_id=resolve_shop(key, None))
        except CheckoutNotFoundError:
            return self.not_found(key, f"checkout {checkout_id}")
        done = "recovered" if recover else "cancelled"
        await self.record(checkout_id, key, done)
        return RedirectResponse(checkout_url(checkout_id, done), status_code=303)

    async def task_form(
        self, request: Request, key: ApiKey, task_id: int, *, reopen: bool
    ) -> HTMLResponse:
        task = await self.tasks.get(task_id, shop_id=resolve_shop(key, None))
        if task is None:
            return self.not_found(key, f"task {task_id}")
        ask = task_ask(task, reopen=reopen, from_checkout=_back_to_checkout(request))
        return self.confirm_page(request, key, ask)

    async def task_post(
        self, request: Request, key: ApiKey, task_id: int, *, reopen: bool
    ) -> Response:
        form = await self.checked_form(request, key)
        if isinstance(form, HTMLResponse):
            return form
        before = await self.tasks.get(task_id, shop_id=resolve_shop(key, None))
        if before is None:
            return self.not_found(key, f"task {task_id}")
        wanted = TaskStatus.OPEN if reopen else TaskStatus.DONE
        if before.status is not wanted:
            change = self.tasks.reopen if reopen else self.tasks.mark_done
            task = await change(task_id)
            if task is not None:
                done = f"task {task_id} {'reopened' if reopen else 'done'}"
                await self.record(task.checkout_id, key, done)
        outcome = "task-reopened" if reopen else "task-done"
        if _back_to_checkout(request):
            return RedirectResponse(checkout_url(before.checkout_id, outcome), status_code=303)
        return RedirectResponse(f"{PREFIX}/tasks?outcome={outcome}", status_code=303)


def checkout_url(checkout_id: str, outcome: str | None = None) -> str:
    url = f"{PREFIX}/checkouts/{quote(checkout_id, safe='')}"
    return url + (f"?outcome={outcome}" if outcome else "")


def checkout_ask(checkout_id: str, *, recover: bool) -> _Confirmation:
    if recover:
        return _Confirmation(
            title=f"Recover checkout {checkout_id}",
            question=f"Recover checkout {checkout_id}? It is marked recovered and its flow "
            "stops: no later step runs.",
            action=checkout_url(checkout_id) + "/recover",
            back=checkout_url(checkout_id),
            confirm="Confirm recovery",
            order_field=True,
        )
    return _Confirmation(
        title=f"Cancel checkout {checkout_id}",
        question=f"Cancel checkout {checkout_id}? Its flow stops without a recovery: no later "
        "step runs.",
        action=checkout_url(checkout_id) + "/cancel",
        back=checkout_url(checkout_id),
        confirm="Confirm cancel",
    )


def task_ask(task: StaffTask, *, reopen: bool, from_checkout: bool = False) -> _Confirmation:
    """`from_checkout`: asked from the task's checkout page, which Back and the outcome show."""
    verb = "Reopen" if reopen else "Mark done"
    action = f"{PREFIX}/tasks/{task.id}/{'reopen' if reopen else 'done'}"
    return _Confirmation(
        title=f"{verb}: task {task.id}",
        question=f"{verb} task {task.id} ({task.title}, checkout {task.checkout_id})?",
        action=action + (f"?back={BACK_TO_CHECKOUT}" if from_checkout else ""),
        back=checkout_url(task.checkout_id) if from_checkout else f"{PREFIX}/tasks",
        confirm=f"Confirm: {verb.lower()}",
    )


def actions_router(
    gate: Gate, secret: str, store_tasks: TaskStore, service: CheckoutService, show: ShowPage
) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    acts = _Actions(secret, store_tasks, service, show)
    Operator = Annotated[ApiKey, Depends(gate.operator)]  # noqa: N806 (a type, named as one)
    TaskId = Annotated[int, Path(ge=1, le=MAX_TASK_ID)]  # noqa: N806

    @router.get("/checkouts/{checkout_id}/recover")
    async def recover_form(request: Request, key: Operator, checkout_id: str) -> HTMLResponse:
        found = await acts.checkout(key, checkout_id)
        if isinstance(found, HTMLResponse):
            return found
        return acts.confirm_page(request, key, checkout_ask(checkout_id, recover=True))

    @router.post("/checkouts/{checkout_id}/recover")
    async def recover(request: Request, key: Operator, checkout_id: str) -> Response:
        return await acts.checkout_post(request, key, checkout_id, recover=True)

    @router.get("/checkouts/{checkout_id}/cancel")
    async def cancel_form(request: Request, key: Operator, checkout_id: str) -> HTMLResponse:
        found = await acts.checkout(key, checkout_id)
        if isinstance(found, HTMLResponse):
            return found
        return acts.confirm_page(request, key, checkout_ask(checkout_id, recover=False))

    @router.post("/checkouts/{checkout_id}/cancel")
    async def cancel(request: Request, key: Operator, checkout_id: str) -> Response:
        return await acts.checkout_post(request, key, checkout_id, recover=False)

    @router.get("/tasks/{task_id}/done")
    async def done_form(request: Request, key: Operator, task_id: TaskId) -> HTMLResponse:
        return await acts.task_form(request, key, task_id, reopen=False)

    @router.post("/tasks/{task_id}/done")
    async def done(request: Request, key: Operator, task_id: TaskId) -> Response:
        return await acts.task_post(request, key, task_id, reopen=False)

    @router.get("/tasks/{task_id}/reopen")
    async def reopen_form(request: Request, key: Operator, task_id: TaskId) -> HTMLResponse:
        return await acts.task_form(request, key, task_id, reopen=True)

    @router.post("/tasks/{task_id}/reopen")
    async def reopen(request: Request, key: Operator, task_id: TaskId) -> Response:
        return await acts.task_post(request, key, task_id, reopen=True)

    return router
