"""The `checkout-recovery` command."""

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from cli import checkouts as checkout_commands
from cli.checkouts import checkouts_app
from cli.health import health as health_command
from cli.import_checkouts import import_file
from cli.keys import keys_app
from cli.metrics import API_METRICS_SETTING, WORKER_METRICS_SETTING, serve_metrics
from cli.policy import policy_app
from cli.shops import shops_app
from cli.stats import stats as stats_command
from cli.support import (
    DEBUG_ENV,
    BadInputError,
    CommandGroup,
    ShopOption,
    policy_for_shop,
    policy_override,
    read_json,
    require_free_port,
    require_shop,
    run_command,
    set_debug,
)
from cli.support import configured_policy as _checked_policy
from cli.support import settings_or_fail as _settings
from cli.tasks import tasks_app
from codec.payload_codec import generate_codec_key
from devstack.mailbox import read_mailbox
from devstack.stack import embedded_smtp, mail_folder, temporal_dev_server
from domain.checkout import AbandonedCheckout
from domain.report import parse_report, parse_update
from domain.shops import DEFAULT_SHOP
from service.checkouts import CheckoutService
from telemetry import tracing
from telemetry.logs import configure_logging
from workers.api_server import build_app, dev_api_key, serving
from workers.process_exit import leave
from workers.resources import open_service, open_store
from workers.search_attributes import search_attributes_registered
from workers.settings import Settings
from workers.temporal_client import connect
from workers.worker import open_worker, run_until_stopped, stop_on_signals

app = typer.Typer(
    cls=CommandGroup,
    help="Abandoned-checkout recovery engine: one durable Temporal workflow per checkout.",
    no_args_is_help=True,
    add_completion=False,
    # CommandGroup reports every error in one line; --debug prints a plain traceback instead
    # of typer's (which would show local variables, settings with secrets among them).
    pretty_exceptions_enable=False,
)

PolicyOption = Annotated[
    str | None,
    typer.Option("--policy", help="Built-in policy name (default, demo) or a TOML file path."),
]


@app.callback()
def _options(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", envvar=DEBUG_ENV, help="On an error, print its Python traceback too."
        ),
    ] = False,
) -> None:
    set_debug(ctx, debug)


def _configure_telemetry(settings: Settings, role: str) -> None:
    """Logs in the configured format; traces when the OpenTelemetry variables ask for them
    (before anything connects to Temporal: the client takes the tracing interceptor)."""
    configure_logging(settings.log_format)
    tracing.install(settings.tracing_config(), role)


def _read_checkout(source: str, parse: Callable[[object], AbandonedCheckout]) -> AbandonedCheckout:
    """The checkout in the JSON file `source` (- for stdin), read by `parse`; a file that cannot
    be read or is not JSON, or a field at fault, exits 2 with the reason before anything runs."""
    return parse(read_json(source))


@app.command()
def dev(policy: PolicyOption = None) -> None:
    """Run everything locally: Temporal dev server (with Web UI), SMTP server, store and worker.

    Runs the demo policy (emails seconds apart) unless --policy or CHECKOUT_RECOVERY_POLICY
    names another."""
    defaulted = policy is None and POLICY_SETTING not in os.environ
    settings = _settings(DEV_POLICY if defaulted else policy)
    _configure_telemetry(settings, "dev")
    recovery_policy = _checked_policy(settings)
    _require_dev_ports(settings)
    # One process, one runtime: the worker's listener serves the API's metrics too.
    serve_metrics(settings.worker_metrics_address, WORKER_METRICS_SETTING)

    async def run() -> None:
        stop = stop_on_signals()
        async with (
            temporal_dev_server(settings) as client,
            embedded_smtp(settings) as smtp,
            open_store(settings) as store,
            open_worker(client, settings, store) as worker,
        ):
            service = CheckoutService(
                client,
                store,
                settings.task_queue,
                search_attributes=await search_attributes_registered(client),
            )
            app = build_app(settings, service, store, recovery_policy, smtp.folder)
            async with serving(app, settings.api_host, settings.api_port):
                key = await dev_api_key(store, settings.data_dir)
                _print_banner(settings, smtp.folder, key, defaulted)
                await run_until_stopped(worker, stop)

    run_command(run())


DEV_POLICY = "demo"
"""What `dev` runs when nothing names a policy: a newcomer sees the first email within seconds."""
POLICY_SETTING = "CHECKOUT_RECOVERY_POLICY"


def _require_dev_ports(settings: Settings) -> None:
    """Say which port is taken before starting anything: a Temporal dev server that cannot bind
    exits with its reason in a log file, and another Temporal already listening would be used
    as if it were the stack's own."""
    temporal_host, _, temporal_port = settings.temporal_address.rpartition(":")
    temporal_host = "127.0.0.1" if temporal_host in ("", "localhost") else temporal_host
    ui_port = settings.temporal_ui_url.rstrip("/").rpartition(":")[2]
    for what, host, port in (
        ("the Temporal dev server", temporal_host, temporal_port),
        ("the Temporal Web UI", temporal_host, ui_port),
        ("the SMTP server", settings.smtp_host, str(settings.smtp_port)),
        ("the API", settings.api_host, str(settings.api_port)),
    ):
        if not port.isdigit():
            raise BadInputError(f"{what}: no port in its address ({host}:{port})")
        require_free_port(what, host, int(port))


def _metrics_line(settings: Settings) -> str:
    address = settings.worker_metrics_address
    if not address:
        return f"off (set {WORKER_METRICS_SETTING})"
    return f"http://{address}/metrics  (the SDK's, the worker's and the API's)"


def _print_banner(settings: Settings, folder: Path, api_key: str, defaulted: bool) -> None:
    api = f"http://{settings.api_host}:{settings.api_port}"
    typer.echo(
        "\nCheckout recovery dev stack is running (Ctrl-C stops it)\n"
        f"  HTTP API          {api}  (OpenAPI: {api}/docs)\n"
        f"  Dashboard         {api}/dashboard  (log in with the development key)\n"
        f"  Development key   {api_key}\n"
        f"  Temporal Web UI   {settings.temporal_ui_url}\n"
        f"{_codec_line(settings)}"
        f"  Temporal address  {settings.temporal_address}"
        f" (namespace {settings.temporal_namespace})\n"
        f"  SMTP server       {settings.smtp_host}:{settings.smtp_port}\n"
        f"  Metrics           {_metrics_line(settings)}\n"
        f"  Received mail     {folder.resolve()}  (list it: checkout-recovery mail)\n"
        f"  Store             {settings.store_url}\n"
        f"  Policy            {_policy_line(settings, defaulted)}\n"
        "\nTry it, in another terminal: report the example checkout, with either command (the"
        " second\nanswers that it is already reported)"
        f"{' and the first email arrives within 15 seconds' if defaulted else ''}:\n"
        f'  curl -H "Authorization: Bearer {api_key}" -H "Content-Type: application/json" \\\n'
        f"       -d @examples/checkout.json {api}/ecom/v1/abandoned-checkout\n"
        "  ./run cli start examples/checkout.json\n"
        "  ./run cli show ID      ./run cli mail      ./run cli recover ID\n"
        "(with the package installed: checkout-recovery start ..., and so on)\n"
    )


def _policy_line(settings: Settings, defaulted: bool) -> str:
    if defaulted:
        return (
            f"{DEV_POLICY} (dev's default: emails at 10 s and 25 s, a staff task at 40 s; "
            "--policy or CHECKOUT_RECOVERY_POLICY runs another)"
        )
    return settings.policy


def _codec_line(settings: Settings) -> str:
    """With encryption on: where the Web UI decodes, and what the operator does once for it."""
    if settings.codec_keys is None:
        return ""
    return (
        f"  Web UI codec      {settings.ui_codec_endpoint}  (sign into "
        f"{settings.public_url.rstrip('/')}/dashboard, then in the Web UI's codec settings "
        "use this endpoint with 'include cross-origin credentials'; see the README)\n"
    )


@app.command()
def worker(policy: PolicyOption = None) -> None:
    """Run a worker alone (production): connects to TEMPORAL_ADDRESS and the configured SMTP."""
    settings = _settings(policy)
    _configure_telemetry(settings, "worker")
    _checked_policy(settings)
    serve_metrics(settings.worker_metrics_address, WORKER_METRICS_SETTING)

    async def run() -> None:
        stop = stop_on_signals()
        client = await connect(settings)
        async with open_store(settings) as store, open_worker(client, settings, store) as w:
            logging.getLogger(__name__).info(
                "Worker polling %s on %s", settings.task_queue, settings.temporal_address
            )
            await run_until_stopped(w, stop)

    run_command(run())


@app.command()
def api(policy: PolicyOption = None) -> None:
    """Run the HTTP service alone (production): reports, recovery, queries, events, codec."""
    settings = _settings(policy)
    _configure_telemetry(settings, "api")
    recovery_policy = _checked_policy(settings)
    require_free_port("the API", settings.api_host, settings.api_port)
    serve_metrics(settings.api_metrics_address, API_METRICS_SETTING)

    async def run() -> None:
        stop = stop_on_signals()
        async with open_service(settings) as service:
            app = build_app(settings, service, service.store, recovery_policy)
            async with serving(app, settings.api_host, settings.api_port):
                logging.getLogger(__name__).info(
                    "API listening on http://%s:%s", settings.api_host, settings.api_port
                )
                await stop.wait()

    run_command(run())


@app.command()
def start(
    file: Annotated[
        str, typer.Argument(help="JSON file of the abandoned checkout, or - for stdin.")
    ],
    policy: PolicyOption = None,
    shop: ShopOption = DEFAULT_SHOP,
) -> None:
    """Report an abandoned checkout into the shop and start its recovery flow; prints its id.

    The flow gets the shop's own policy, else the running engine's (the one its workers published
    as they started); --policy overrides it for this checkout. Which one it got is said on
    stderr."""
    settings = _settings()
    checkout = _read_checkout(file, parse_report)
    override = policy_override(settings, policy)

    async def run() -> None:
        async with open_service(settings) as service:
            shop_id, chosen = await policy_for_shop(service.store, settings, shop, override)
            outcome = await service.report(checkout, chosen.policy, shop_id=shop_id)
        typer.echo(outcome.checkout_id)
        if outcome.new:
            typer.echo(f"policy: {chosen.policy.name} ({chosen.source})", err=True)
        else:
            typer.echo("(already reported: its existing flow goes on)", err=True)

    run_command(run())


@app.command()
def update(
    file: Annotated[str, typer.Argument(help="JSON file of the new checkout snapshot, or -.")],
    shop: ShopOption = DEFAULT_SHOP,
) -> None:
    """Give a running flow the buyer's newest cart: later steps show these items and prices.

    The snapshot has a report's fields; its checkoutId (or cartId) names the checkout, or an
    `id` (the engine's, as `show` prints it) does."""
    settings = _settings()
    checkout = _read_checkout(file, parse_update)

    async def run() -> None:
        async with open_service(settings) as service:
            shop_id = await require_shop(service.store, shop)
            typer.echo(await service.update(checkout, shop_id=shop_id))

    run_command(run())


# The short forms are the `checkouts` commands themselves, answering in JSON as they always did.
IdArgument = Annotated[str, typer.Argument(metavar="ID")]


@app.command()
def recover(
    checkout_id: IdArgument,
    order_id: Annotated[
        str | None, typer.Option("--order-id", help="The order that recovered it.")
    ] = None,
    shop: ShopOption = DEFAULT_SHOP,
) -> None:
    """Alias of `checkouts recover ID --json`: mark a checkout recovered; its flow stops."""
    checkout_commands.recover(checkout_id, order_id, shop=shop, as_json=True)


@app.command()
def cancel(checkout_id: IdArgument, shop: ShopOption = DEFAULT_SHOP) -> None:
    """Alias of `checkouts cancel ID --json`: stop the flow without marking it recovered."""
    checkout_commands.cancel(checkout_id, shop=shop, as_json=True)


@app.command()
def show(checkout_id: IdArgument, shop: ShopOption = DEFAULT_SHOP) -> None:
    """Alias of `checkouts show ID --json`: the checkout with its full activity list, its flow,
    its policy and its next step."""
    checkout_commands.show(checkout_id, shop=shop, as_json=True)


@app.command()
def smtp() -> None:
    """Run the embedded SMTP server alone; it keeps what it receives in the data folder."""
    settings = _settings()
    configure_logging(settings.log_format)
    require_free_port("the SMTP server", settings.smtp_host, settings.smtp_port)

    async def run() -> None:
        stop = stop_on_signals()
        async with embedded_smtp(settings) as server:
            typer.echo(
                f"SMTP server on {settings.smtp_host}:{settings.smtp_port}, "
                f"keeping mail in {server.folder.resolve()}"
            )
            await stop.wait()

    run_command(run())


@app.command()
def mail(
    last: Annotated[
        int, typer.Option("--last", min=1, help="How many of the newest messages.")
    ] = 20,
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


app.add_typer(keys_app, name="keys")
app.add_typer(policy_app, name="policy")
app.add_typer(checkouts_app, name="checkouts")
app.add_typer(tasks_app, name="tasks")
app.add_typer(shops_app, name="shops")
app.command("import")(import_file)
app.command("stats")(stats_command)
app.command("health")(health_command)


@app.command("codec-key")
def codec_key() -> None:
    """Print a new payload-encryption key entry ("id:base64key") for CHECKOUT_RECOVERY_CODEC_KEYS.

    To rotate: put the new entry first and keep the old ones after it (they still decrypt), roll
    out every worker, API and CLI, and drop the old entry once no open flow needs it.
    """
    typer.echo(generate_codec_key())


def main() -> None:
    """The installed `checkout-recovery`: the app, then an exit that skips the interpreter's
    teardown (workers/process_exit.py says why). Every command has closed what it opened by the
    time the app returns."""
    try:
        app()
    except SystemExit as done:
        code = done.code
    else:
        code = 0
    if isinstance(code, str):  # sys.exit("message"): Python prints it and exits 1
        typer.echo(code, err=True)
    leave(code if isinstance(code, int) else 0 if code is None else 1)
