"""The `checkout-recovery` command."""

import asyncio
import json
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from api.checkouts import CheckoutNotFoundError
from domain.checkout import AbandonedCheckout, parse_checkout
from domain.errors import InvalidInputError
from domain.policy import RecoveryPolicy
from workers.dev_stack import embedded_smtp, mail_folder, temporal_dev_server
from workers.mailbox import read_mailbox
from workers.resources import open_service, open_store
from workers.settings import Settings
from workers.temporal_client import connect
from workers.worker import check_policy, open_worker, run_until_stopped, stop_on_signals

app = typer.Typer(
    help="Abandoned-checkout recovery engine: one durable Temporal workflow per checkout.",
    no_args_is_help=True,
    add_completion=False,
)

PolicyOption = Annotated[
    str | None,
    typer.Option("--policy", help="Built-in policy name (default, demo) or a TOML file path."),
]


def _settings(policy: str | None = None) -> Settings:
    try:
        settings = Settings()
    except ValidationError as err:
        _fail(f"invalid settings: {err}")
    return settings.model_copy(update={"policy": policy}) if policy else settings


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # aiosmtpd logs every connection at INFO; the dev stack's own log line per message is enough.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


def _read_checkout(source: str) -> AbandonedCheckout:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        _fail(f"{source} is not JSON: {err}", code=2)
    if isinstance(data, dict) and "abandonedCheckout" in data:
        data = data["abandonedCheckout"]
    try:
        return parse_checkout(data)
    except InvalidInputError as err:
        _fail(str(err), code=2)


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@app.command()
def dev(policy: PolicyOption = None) -> None:
    """Run everything locally: Temporal dev server (with Web UI), SMTP server, store and worker."""
    _configure_logging()
    settings = _settings(policy)
    _check_policy_or_fail(settings)

    async def run() -> None:
        stop = stop_on_signals()
        async with (
            temporal_dev_server(settings) as client,
            embedded_smtp(settings) as smtp,
            open_store(settings) as store,
            open_worker(client, settings, store) as worker,
        ):
            _print_banner(settings, smtp.folder)
            await run_until_stopped(worker, stop)

    _run_reporting_input_errors(run())


def _print_banner(settings: Settings, folder: Path) -> None:
    typer.echo(
        "\nCheckout recovery dev stack is running (Ctrl-C stops it)\n"
        f"  Temporal Web UI   {settings.temporal_ui_url}\n"
        f"  Temporal address  {settings.temporal_address}"
        f" (namespace {settings.temporal_namespace})\n"
        f"  SMTP server       {settings.smtp_host}:{settings.smtp_port}\n"
        f"  Received mail     {folder.resolve()}  (list it: checkout-recovery mail)\n"
        f"  Store             {settings.store_url}\n"
        f"  Default policy    {settings.policy}\n"
        "\nTry it, in another terminal (emails arrive within 30 seconds):\n"
        "  ./run cli start examples/checkout.json --policy demo\n"
        "  ./run cli show ID      ./run cli mail      ./run cli recover ID\n"
        "(with the package installed: checkout-recovery start ..., and so on)\n"
    )


@app.command()
def worker(policy: PolicyOption = None) -> None:
    """Run a worker alone (production): connects to TEMPORAL_ADDRESS and the configured SMTP."""
    _configure_logging()
    settings = _settings(policy)
    _check_policy_or_fail(settings)

    async def run() -> None:
        stop = stop_on_signals()
        client = await connect(settings)
        async with open_store(settings) as store, open_worker(client, settings, store) as w:
            logging.getLogger(__name__).info(
                "Worker polling %s on %s", settings.task_queue, settings.temporal_address
            )
            await run_until_stopped(w, stop)

    _run_reporting_input_errors(run())


@app.command()
def start(
    file: Annotated[
        str, typer.Argument(help="JSON file of the abandoned checkout, or - for stdin.")
    ],
    policy: PolicyOption = None,
) -> None:
    """Report an abandoned checkout and start its recovery flow; prints its id."""
    settings = _settings(policy)
    checkout = _read_checkout(file)
    recovery_policy = _check_policy_or_fail(settings)

    async def run() -> None:
        async with open_service(settings) as service:
            outcome = await service.report(checkout, recovery_policy)
        typer.echo(outcome.checkout_id)
        if not outcome.new:
            typer.echo("(already reported: its existing flow goes on)", err=True)

    asyncio.run(run())


@app.command()
def update(
    file: Annotated[str, typer.Argument(help="JSON file of the new checkout snapshot, or -.")],
) -> None:
    """Give a running flow the buyer's newest cart: later steps show these items and prices."""
    settings = _settings()
    checkout = _read_checkout(file)

    async def run() -> None:
        async with open_service(settings) as service:
            typer.echo(await service.update(checkout))

    _run_reporting_missing(run())


@app.command()
def recover(
    checkout_id: Annotated[str, typer.Argument(metavar="ID")],
    order_id: Annotated[
        str | None, typer.Option("--order-id", help="The order that recovered it.")
    ] = None,
) -> None:
    """Mark a checkout recovered: its flow stops and no further step runs."""
    settings = _settings()

    async def run() -> None:
        async with open_service(settings) as service:
            checkout = await service.recover(checkout_id, order_id)
        _print_json(checkout.to_json_dict())

    _run_reporting_missing(run())


@app.command()
def cancel(checkout_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Stop a checkout's flow without marking it recovered."""
    settings = _settings()

    async def run() -> None:
        async with open_service(settings) as service:
            await service.cancel(checkout_id)
        typer.echo(f"cancel sent to the flow of {checkout_id}")

    _run_reporting_missing(run())


@app.command()
def show(checkout_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Print the checkout as JSON, with its full activity list."""
    settings = _settings()

    async def run() -> None:
        async with open_store(settings) as store:
            checkout = await store.get(checkout_id)
        if checkout is None:
            raise CheckoutNotFoundError(checkout_id)
        _print_json({"abandonedCheckout": checkout.to_json_dict()})

    _run_reporting_missing(run())


@app.command()
def smtp() -> None:
    """Run the embedded SMTP server alone; it keeps what it receives in the data folder."""
    _configure_logging()
    settings = _settings()

    async def run() -> None:
        stop = stop_on_signals()
        async with embedded_smtp(settings) as server:
            typer.echo(
                f"SMTP server on {settings.smtp_host}:{settings.smtp_port}, "
                f"keeping mail in {server.folder.resolve()}"
            )
            await stop.wait()

    asyncio.run(run())


@app.command()
def mail(
    last: Annotated[int, typer.Option("--last", help="How many of the newest messages.")] = 20,
) -> None:
    """List what the dev stack's embedded SMTP server received."""
    folder = mail_folder(_settings())
    received = read_mailbox(folder)[-last:]
    if not received:
        typer.echo(f"no mail in {folder.resolve()}")
    for item in received:
        m = item.message
        typer.echo(
            f"{m['Date']}  to {m['To']}\n    {m['Subject']}\n    {folder / 'new' / item.key}"
        )


def _check_policy_or_fail(settings: Settings) -> RecoveryPolicy:
    """Stop before connecting anywhere when the policy or one of its templates is wrong."""
    try:
        return check_policy(settings)
    except InvalidInputError as err:
        _fail(str(err), code=2)


def _run_reporting_missing(coroutine: Coroutine[object, object, None]) -> None:
    try:
        asyncio.run(coroutine)
    except CheckoutNotFoundError as err:
        _fail(str(err), code=3)


def _run_reporting_input_errors(coroutine: Coroutine[object, object, None]) -> None:
    try:
        asyncio.run(coroutine)
    except InvalidInputError as err:
        _fail(str(err), code=2)


def main() -> None:
    app()
