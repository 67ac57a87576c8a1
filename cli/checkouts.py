"""`checkout-recovery checkouts ...`: find a checkout, see what happened and what comes next, act.

`list` and `show` read the store (the durable record); `show` adds the flow's state from Temporal
and `history` reads the flow's event history there. `recover` and `cancel` go through the same
CheckoutService as the HTTP API, so the store is written before the flow is told.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Column, Table
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from cli.output import JsonFlag, console, iso, shown
from cli.support import (
    BadInputError,
    NotFoundError,
    ShopOption,
    UnreachableError,
    checked_policy,
    print_json,
    require_shop,
    run_command,
    settings_or_fail,
    temporal_reason,
)
from domain.checkout import AbandonedCheckout, BuyerIdentity, CheckoutStatus
from domain.durations import parse_moment
from domain.errors import InvalidInputError, describe_validation_error
from domain.flow import workflow_id_for
from domain.policy import RecoveryPolicy
from domain.query import MAX_LIMIT, CheckoutPage, parse_query
from domain.shops import DEFAULT_SHOP
from service.checkouts import BuyerRecovery, CheckoutNotFoundError
from service.flow_runs import fetch_flow_history
from service.flow_view import FlowState, NextStep, describe_flow, planned_next_step
from service.history_summary import HistoryRow, decode_failure_messages, summarise_history
from service.reconciler import Reconciler, ReconcileReport
from store.sql import SqlStore
from workers.policy_files import load_policy
from workers.resources import open_service, open_store
from workers.search_attributes import search_attributes_registered
from workers.settings import Settings
from workers.temporal_client import connect

checkouts_app = typer.Typer(
    help="Find abandoned checkouts, read their flows, recover or cancel them.",
    no_args_is_help=True,
)

IdArgument = Annotated[str, typer.Argument(metavar="ID", help="The abandoned checkout's id.")]


# --- list ----------------------------------------------------------------------------------


@checkouts_app.command("list")
def list_checkouts(  # noqa: PLR0917 - typer takes each option as a parameter
    status: Annotated[CheckoutStatus | None, typer.Option("--status", case_sensitive=False)] = None,
    email: Annotated[str | None, typer.Option("--email", help="The buyer's email.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Created at or after: ISO date/time (UTC if no zone) or 7d."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Created before: ISO date/time or a duration ago.")
    ] = None,
    cart_id: Annotated[str | None, typer.Option("--cart-id")] = None,
    checkout_id: Annotated[str | None, typer.Option("--checkout-id", help="The shop's.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LIMIT)] = 20,
    cursor: Annotated[
        str | None,
        typer.Option("--cursor", help="The next page of an earlier listing (alone, no filters)."),
    ] = None,
    shop: ShopOption = DEFAULT_SHOP,
    as_json: JsonFlag = False,
) -> None:
    """List the shop's checkouts, newest first, with the filters of the query API; pages by
    cursor."""
    settings = settings_or_fail()

    async def run() -> CheckoutPage:
        conditions = _filter(
            status=status,
            email=email,
            since=since,
            until=until,
            cart_id=cart_id,
            checkout_id=checkout_id,
            now=datetime.now(UTC),
        )
        if cursor is not None and conditions:
            # A cursor carries its listing's filters; "--since 7d" again would mean another instant.
            raise InvalidInputError(
                "options", ["--cursor: give it alone (with --limit), no filters"]
            )
        paging: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        spec: dict[str, Any] = {"cursorPaging": paging} | (
            {"filter": conditions} if conditions else {}
        )
        query = parse_query({"query": spec})
        async with open_store(settings) as store:
            return await store.query(query, shop_id=await require_shop(store, shop))

    page = run_command(run())
    if as_json:
        print_json(page.to_json_dict())
        return
    _print_page(page, shop)


def _filter(
    *,
    status: CheckoutStatus | None,
    email: str | None,
    since: str | None,
    until: str | None,
    cart_id: str | None,
    checkout_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The query API's filter for the options given (empty when none was)."""
    conditions: dict[str, Any] = {}
    for field, value in (
        ("status", status.value if status else None),
        ("buyerInfo.email", email),
        ("cartId", cart_id),
        ("checkoutId", checkout_id),
    ):
        if value is not None:
            conditions[field] = {"$eq": value}
    created: dict[str, str] = {}
    if since is not None:
        created["$gte"] = _moment("--since", since, now).isoformat()
    if until is not None:
        created["$lt"] = _moment("--until", until, now).isoformat()
    if created:
        conditions["createdDate"] = created
    return conditions


def _moment(option: str, text: str, now: datetime) -> datetime:
    try:
        return parse_moment(text, now)
    except (ValueError, OverflowError) as err:  # OverflowError: a date before year 1
        raise InvalidInputError("options", [f"{option}: {err}"]) from None


def _print_page(page: CheckoutPage, shop: str) -> None:
    out = console()
    if not page.checkouts:
        out.print("no checkouts match")
    else:
        # Ids fold rather than end in "…": an operator copies them into the next command.
        table = Table(
            Column("ID", overflow="fold"),
            "Created (UTC)",
            "Status",
            "Email",
            "Total",
            "Last activity",
        )
        for checkout in page.checkouts:
            last = checkout.activities[-1] if checkout.activities else None
            table.add_row(
                checkout.id,
                shown(checkout.created_date),
                checkout.status.value,
                checkout.buyer_info.email or "-",
                checkout.total_price.display(checkout.currency),
                f"{last.type.value} {shown(last.created_date)}" if last else "-",
            )
        out.print(table)
    if page.cursors.next:
        # Soft wrap: the cursor is one long word and must stay copyable as one.
        out.print(
            f"next page: checkout-recovery checkouts list --cursor {page.cursors.next}"
            + (f" --shop {shop}" if shop != DEFAULT_SHOP else ""),
            soft_wrap=True,
        )


# --- show ----------------------------------------------------------------------------------


@checkouts_app.command("show")
def show(
    checkout_id: IdArgument, shop: ShopOption = DEFAULT_SHOP, as_json: JsonFlag = False
) -> None:
    """The checkout, its activity timeline, its next step and its workflow in Temporal."""
    settings = settings_or_fail()

    async def run() -> tuple[AbandonedCheckout, FlowState]:
        async with open_store(settings) as store:
            checkout = await _require(store, checkout_id, shop)
        return checkout, await _flow_state(settings, checkout_id)

    checkout, flow = run_command(run())
    policy, source = _policy(flow, settings)
    upcoming = planned_next_step(checkout, flow, policy)
    if as_json:
        print_json(
            {
                "abandonedCheckout": checkout.to_json_dict(),
                "workflow": flow.to_json_dict(),
                "policy": {"name": policy.name, "source": source} if policy else None,
                "nextStep": upcoming.to_json_dict() if upcoming else None,
            }
        )
        return
    _print_checkout(checkout, flow, policy, source, upcoming)


async def _require(store: SqlStore, checkout_id: str, shop: str) -> AbandonedCheckout:
    """The shop's checkout: another shop's id is not found, as an unknown one is (and the
    shop must exist). Commands that then go to Temporal by workflow id check this first."""
    checkout = await store.get(checkout_id, shop_id=await require_shop(store, shop))
    if checkout is None:
        raise CheckoutNotFoundError(checkout_id)
    return checkout


async def _flow_state(settings: Settings, checkout_id: str) -> FlowState:
    link = settings.workflow_link.format(workflow_id=workflow_id_for(checkout_id))
    try:
        client = await connect(settings)
    except RuntimeError as err:
        # The store's record is still worth showing when Temporal is down.
        problem = f"cannot reach Temporal at {settings.temporal_address}: {temporal_reason(err)}"
        return FlowState(workflow_id_for(checkout_id), "UNREACHABLE", link, problem=problem)
    return await describe_flow(client, checkout_id, link)


def _policy(flow: FlowState, settings: Settings) -> tuple[RecoveryPolicy | None, str]:
    if flow.flow_input is not None:
        return flow.flow_input.policy, "workflow input"
    try:
        return checked_policy(settings.policy, lambda: load_policy(settings.policy)), "configured"
    except (InvalidInputError, BadInputError):
        return None, "none"


def _print_checkout(
    checkout: AbandonedCheckout,
    flow: FlowState,
    policy: RecoveryPolicy | None,
    source: str,
    upcoming: NextStep | None,
) -> None:
    out = console()
    buyer = checkout.buyer_info
    name = " ".join(
        part
        for part in (checkout.contact_details.first_name, checkout.contact_details.last_name)
        if part
    )
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    facts.add_row("checkout", f"{checkout.id}  [bold]{checkout.status.value}[/bold]")
    facts.add_row(
        "shop ids", f"checkoutId {checkout.checkout_id or '-'}, cartId {checkout.cart_id or '-'}"
    )
    facts.add_row("buyer", f"{buyer.email or '(no email)'}" + (f" ({name})" if name else ""))
    items = sum(item.quantity for item in checkout.line_items)
    facts.add_row("total", f"{checkout.total_price.display(checkout.currency)}, {items} item(s)")
    facts.add_row("created", f"{shown(checkout.created_date)} UTC")
    if checkout.checkout_recovered_date:
        order = f", order {checkout.order_id}" if checkout.order_id else ""
        facts.add_row("recovered", f"{shown(checkout.checkout_recovered_date)} UTC{order}")
    if checkout.stop_reason is not None:
        facts.add_row("stopped", f"{checkout.stop_reason.value}: no further step runs")
    if checkout.flow_state is not None:
        pending = checkout.flow_state.value == "PENDING"
        waiting = "  (a change waits for Temporal; the hand-off delivers it)" if pending else ""
        facts.add_row("hand-off", f"{checkout.flow_state.value}{waiting}")
    facts.add_row("workflow", f"{flow.status}  {flow.workflow_id}")
    if flow.problem:
        facts.add_row("", flow.problem)
    facts.add_row("Temporal UI", flow.link)
    facts.add_row("policy", f"{policy.name} ({source})" if policy else "unknown")
    facts.add_row("next step", _next_text(upcoming))
    out.print(facts)
    timeline = Table("Time (UTC)", "Activity", "Step", "Reason", title="Activity timeline")
    for entry in checkout.activities:
        timeline.add_row(
            shown(entry.created_date),
            entry.type.value,
            str(entry.step) if entry.step is not None else "",
            entry.reason or "",
        )
    out.print(timeline)


def _next_text(upcoming: NextStep | None) -> str:
    if upcoming is None:
        return "none"
    due = f"{shown(upcoming.due)} UTC"
    if upcoming.due <= datetime.now(UTC):
        due += " (due now: running, retrying or waiting for a send window)"
    return (
        f"{upcoming.number}: {upcoming.action} {upcoming.template}, due {due}; {upcoming.outcome}"
    )


# --- history -------------------------------------------------------------------------------


@checkouts_app.command("history")
def history(
    checkout_id: IdArgument, shop: ShopOption = DEFAULT_SHOP, as_json: JsonFlag = False
) -> None:
    """The flow's event history from Temporal, for people: timers, activities, retries, signals."""
    settings = settings_or_fail()
    workflow_id = workflow_id_for(checkout_id)

    async def run() -> list[HistoryRow]:
        async with open_store(settings) as store:
            await _require(store, checkout_id, shop)
        client = await _connected(settings)
        try:
            # Every run, oldest first: a flow with many cart updates continues as new.
            events = await fetch_flow_history(client, workflow_id)
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            raise NotFoundError(
                f"no workflow {workflow_id!r} in Temporal: never started, or its history is past "
                "the namespace's retention (the checkout's activities stay: checkouts show)"
            ) from None
        await decode_failure_messages(events, client.data_converter)
        return summarise_history(events)

    rows = run_command(run())
    link = settings.workflow_link.format(workflow_id=workflow_id)
    if as_json:
        print_json(
            {
                "checkoutId": checkout_id,
                "workflowId": workflow_id,
                "link": link,
                "events": [_row_json(row) for row in rows],
            }
        )
        return
    table = Table("#", "Time (UTC)", "Event", "Name", "Detail", title=f"{workflow_id}  {link}")
    for row in rows:
        style = "red" if row.error and row.event != "activity retried" else None
        table.add_row(
            str(row.event_id), shown(row.time), row.event, row.name, row.detail, style=style
        )
    console().print(table)


def _row_json(row: HistoryRow) -> dict[str, Any]:
    return {
        "eventId": row.event_id,
        "time": iso(row.time),
        "event": row.event,
        "name": row.name,
        "detail": row.detail,
        "attempt": row.attempt,
        "error": row.error,
    }


# --- recover and cancel --------------------------------------------------------------------


@checkouts_app.command("recover")
def recover(
    checkout_id: IdArgument,
    order_id: Annotated[
        str | None, typer.Option("--order-id", help="The order that recovered it.")
    ] = None,
    shop: ShopOption = DEFAULT_SHOP,
    as_json: JsonFlag = False,
) -> None:
    """Mark the checkout recovered: its flow stops and no further step runs. Safe to repeat."""
    settings = settings_or_fail()

    async def run() -> AbandonedCheckout:
        async with open_service(settings) as service:
            shop_id = await require_shop(service.store, shop)
            return await service.recover(checkout_id, order_id, shop_id=shop_id)

    checkout = run_command(run())
    if as_json:
        print_json({"abandonedCheckout": checkout.to_json_dict()})
        return
    order = f" by order {checkout.order_id}" if checkout.order_id else ""
    console().print(
        f"{checkout_id} recovered{order} at {shown(checkout.checkout_recovered_date)} UTC; "
        "its flow stops"
    )


@checkouts_app.command("cancel")
def cancel(
    checkout_id: IdArgument, shop: ShopOption = DEFAULT_SHOP, as_json: JsonFlag = False
) -> None:
    """Stop the checkout's flow without marking it recovered."""
    settings = settings_or_fail()

    async def run() -> None:
        async with open_service(settings) as service:
            await service.cancel(checkout_id, shop_id=await require_shop(service.store, shop))

    run_command(run())
    workflow_id = workflow_id_for(checkout_id)
    if as_json:
        print_json({"id": checkout_id, "workflowId": workflow_id, "cancelSent": True})
        return
    console().print(f"cancel sent to {workflow_id}; no further step runs")


@checkouts_app.command("recover-buyer")
def recover_buyer(  # noqa: PLR0917 - typer takes each option as a parameter
    email: Annotated[str | None, typer.Option("--email", help="The buyer's email.")] = None,
    contact_id: Annotated[str | None, typer.Option("--contact-id")] = None,
    member_id: Annotated[str | None, typer.Option("--member-id")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id")] = None,
    order_id: Annotated[
        str | None, typer.Option("--order-id", help="The order the buyer placed.")
    ] = None,
    shop: ShopOption = DEFAULT_SHOP,
    as_json: JsonFlag = False,
) -> None:
    """The buyer bought, the checkout it came from is unknown: recover the buyer's newest open
    checkout with the order and stop every other open one (stopReason buyer_purchased)."""
    settings = settings_or_fail()

    async def run() -> BuyerRecovery:
        buyer = _buyer_identity(email, contact_id, member_id, user_id)
        async with open_service(settings) as service:
            shop_id = await require_shop(service.store, shop)
            outcome = await service.recover_buyer(buyer, order_id, shop_id=shop_id)
        if outcome.recovered is None:
            raise NotFoundError("the buyer has no open abandoned checkout")
        return outcome

    outcome = run_command(run())
    assert outcome.recovered is not None
    if as_json:
        print_json(
            {
                "abandonedCheckout": outcome.recovered.to_json_dict(),
                "stoppedCheckoutIds": outcome.stopped,
            }
        )
        return
    out = console()
    out.print(f"{outcome.recovered.id} recovered; its flow stops")
    for stopped in outcome.stopped:
        out.print(f"{stopped} stopped: buyer_purchased")


def _buyer_identity(
    email: str | None, contact_id: str | None, member_id: str | None, user_id: str | None
) -> BuyerIdentity:
    try:
        return BuyerIdentity.model_validate(
            {"email": email, "contactId": contact_id, "memberId": member_id, "userId": user_id}
        )
    except ValidationError as err:
        raise InvalidInputError("buyer", describe_validation_error(err)) from None


async def _connected(settings: Settings) -> Client:
    try:
        return await connect(settings)
    except RuntimeError as err:
        address = settings.temporal_address
        reason = temporal_reason(err)
        raise UnreachableError(f"cannot reach Temporal at {address}: {reason}") from err


# --- reconcile -----------------------------------------------------------------------------


@checkouts_app.command("reconcile")
def reconcile(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what is wrong; change nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Compare the store with Temporal and repair where they disagree: flows missing for open
    checkouts, flows still running after a recovery, stop or erase, commands stuck."""
    settings = settings_or_fail()

    async def run() -> ReconcileReport:
        policy = checked_policy(settings.policy, lambda: load_policy(settings.policy))
        # Temporal first: when it is down, that is the one thing to say (the service would
        # warn about it before the command fails).
        client = await _connected(settings)
        async with open_service(settings) as service:
            reconciler = Reconciler(
                client,
                service.store,
                service.handoff,
                policy,
                search_attributes=await search_attributes_registered(client),
            )
            return await reconciler.reconcile(dry_run=dry_run)

    report = run_command(run())
    if as_json:
        print_json(report.to_json_dict())
        return
    out = console()
    verb = "would repair" if dry_run else "repaired"
    out.print(
        f"checked {report.checked} open checkout(s) against {report.running_flows} running "
        f"flow(s): {len(report.findings)} problem(s) {verb if report.findings else ''}".rstrip()
    )
    if report.findings:
        table = Table("Checkout", "Problem", "Action", "Detail")
        for finding in report.findings:
            table.add_row(finding.checkout_id, finding.problem, finding.action, finding.detail)
        out.print(table)
