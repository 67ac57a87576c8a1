"""The dashboard's pages under /dashboard: login and logout, stats, checkouts, tasks, mailbox,
previews."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from temporalio.client import Client

from api.auth import Authenticator, resolve_shop
from api.dashboard.actions import ActionPanel, action_panel, actions_router
from api.dashboard.chart import daily_chart
from api.dashboard.config import DashboardConfig
from api.dashboard.filters import NOT_SENT_REASONS, REASONS, ListFilters
from api.dashboard.login import PREFIX, Gate, login_router
from api.dashboard.preview import preview_router
from api.dashboard.timeline import timeline
from api.dashboard.views import MAILBOX, STRICT, page
from api.dashboard.why import why_view
from domain.access import ApiKey
from domain.errors import InvalidInputError
from domain.flow import workflow_id_for
from domain.policy import RecoveryPolicy
from domain.query import parse_query
from domain.sent_email import read_email
from domain.task import TaskStatus
from service.checkouts import CheckoutService
from store.sql import SqlStore
from store.stats import checkout_stats
from store.tasks import TaskStore

DEFAULT_DAYS = 30
MAX_DAYS = 366
NEWEST_MAIL = 50
NEWEST_DONE_TASKS = 20
MAX_STEP = 1000
"""Far beyond any policy's steps; a larger number in a URL is refused (422) before the store."""

Step = Annotated[int, Path(ge=1, le=MAX_STEP)]


def dashboard_router(
    config: DashboardConfig,
    store: SqlStore,
    auth: Authenticator,
    temporal: Client | None = None,
    policy: RecoveryPolicy | None = None,
    *,
    service: CheckoutService | None = None,
) -> APIRouter:
    """`temporal`: where the checkout page reads its flow's state and history (None: it says it
    cannot); `policy`: the configured one, for the next step of a flow whose input is unread;
    `service`: what a manage key's actions go through (None: the dashboard only reads)."""
    gate = Gate(auth, config.session_secret, config.session_hours)
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    router.include_router(login_router(gate))
    Operator = Annotated[ApiKey, Depends(gate.operator)]  # noqa: N806 (a type, named as one)

    def show(template: str, key: ApiKey, status: int = 200, **context: Any) -> HTMLResponse:
        return page(
            template,
            status,
            operator=key,
            mailbox_enabled=config.mailbox is not None,
            preview_enabled=config.previews is not None,
            **context,
        )

    def panel(request: Request, key: ApiKey) -> ActionPanel | None:
        return action_panel(request, key) if service is not None else None

    if config.previews is not None:
        router.include_router(preview_router(gate, config.session_secret, config.previews, show))
    if service is not None:
        tasks_store = TaskStore(store.engine)
        router.include_router(
            actions_router(gate, config.session_secret, tasks_store, service, show)
        )

    @router.get("")
    async def overview(key: Operator, since: str = "", until: str = "") -> HTMLResponse:
        today = datetime.now(UTC).date()
        first = _day(since) or today - timedelta(days=DEFAULT_DAYS - 1)
        last = _day(until) or today
        # At most a year of daily bars: beyond that a bar is thinner than a pixel.
        first = max(first, last - timedelta(days=MAX_DAYS - 1))
        # The form names whole days; the window runs to the end of the last one.
        figures = await checkout_stats(
            store,
            _midnight(first),
            _midnight(last + timedelta(1)),
            shop_id=resolve_shop(key, None),
        )
        chart = daily_chart(figures.daily)
        return show("overview.html", key, stats=figures, chart=chart, first=first, last=last)

    @router.get("/checkouts")
    async def checkout_list(  # noqa: PLR0917 - FastAPI takes each field as a parameter
        key: Operator,
        status: str = "",
        email: str = "",
        checkout_id: Annotated[str, Query(alias="checkoutId")] = "",
        cart_id: Annotated[str, Query(alias="cartId")] = "",
        reason: str = "",
        not_sent: Annotated[str, Query(alias="notSent")] = "",
        since: str = "",
        until: str = "",
        cursor: str = "",
    ) -> HTMLResponse:
        filters = ListFilters.given(
            status=status,
            email=email,
            checkout_id=checkout_id,
            cart_id=cart_id,
            reason=reason,
            not_sent=not_sent,
            since=since,
            until=until,
        )
        problems = filters.problems()
        found = None
        if not problems:
            try:
                query = parse_query(filters.query_body(cursor or None))
                found = await store.query(
                    query, shop_id=resolve_shop(key, None), not_sent=filters.store_not_sent
                )
            except InvalidInputError as err:  # a cursor edited by hand, say
                problems = err.problems
        status_code = 400 if problems else 200
        return show(
            "checkouts.html",
            key,
            status_code,
            filters=filters,
            page=found,
            problems=problems,
            reasons=REASONS,
            not_sent_reasons=NOT_SENT_REASONS,
        )

    @router.get("/checkouts/{checkout_id}")
    async def checkout_page(request: Request, key: Operator, checkout_id: str) -> HTMLResponse:
        checkout = await store.get(checkout_id, shop_id=resolve_shop(key, None))
        if checkout is None:
            return show("not_found.html", key, 404, what=f"checkout {checkout_id}")
        flow = config.workflow_link.format(workflow_id=quote(workflow_id_for(checkout_id)))
        why = await why_view(temporal, checkout_id, checkout, link=flow, configured=policy)
        kept = await store.steps_with_sent_emails(checkout_id)
        return show(
            "checkout.html",
            key,
            checkout=checkout,
            timeline=timeline(checkout, kept),
            flow_link=flow,
            why=why,
            tasks=await store.list_tasks(checkout_id=checkout_id, shop_id=resolve_shop(key, None)),
            now=datetime.now(UTC),
            actions=panel(request, key),
        )

    @router.get("/checkouts/{checkout_id}/emails/{step}")
    async def sent_email(key: Operator, checkout_id: str, step: Step) -> HTMLResponse:
        checkout = await store.get(
            checkout_id, with_activities=False, shop_id=resolve_shop(key, None)
        )
        # An erased checkout's row keeps its shop: another shop's id is not found either way.
        erased = checkout is None and await store.is_erased(
            checkout_id, shop_id=resolve_shop(key, None)
        )
        if checkout is None and not erased:
            return show("not_found.html", key, 404, what=f"checkout {checkout_id}")
        copies = await store.sent_emails(checkout_id, step) if checkout is not None else {}
        mail = copies.get(step)
        # The copy's own styles and images show as the buyer saw them; its script never runs
        # (a sandboxed srcdoc frame, which inherits this policy).
        return show(
            "email.html",
            key,
            200 if mail is not None else 404,
            policy=MAILBOX if mail is not None else STRICT,
            checkout_id=checkout_id,
            step=step,
            mail=mail,
            erased=erased,
        )

    @router.get("/tasks")
    async def open_tasks(request: Request, key: Operator) -> HTMLResponse:
        shop = resolve_shop(key, None)
        tasks = await store.list_tasks(TaskStatus.OPEN, shop_id=shop)
        done = (await store.list_tasks(TaskStatus.DONE, shop_id=shop))[-NEWEST_DONE_TASKS:]
        return show(
            "tasks.html",
            key,
            tasks=tasks,
            done_tasks=done,
            now=datetime.now(UTC),
            actions=panel(request, key),
        )

    @router.get("/mailbox")
    async def mailbox(key: Operator) -> HTMLResponse:
        if config.mailbox is None:
            return show("not_found.html", key, 404, what="the mailbox (dev stack only)")
        received = config.mailbox()[-NEWEST_MAIL:]
        mails = [read_email(m.message) for m in reversed(received)]
        return show("mailbox.html", key, policy=MAILBOX, mails=mails)

    return router


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        return None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)
