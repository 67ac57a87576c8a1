"""`checkout-recovery import FILE`: report many abandoned checkouts from a JSON Lines file.

Each line is one report in the shape the HTTP API accepts. A bad line is recorded with its number
and error and the import goes on; the exit code (2) tells a script that some lines need fixing.
Reports go through CheckoutService.report, which starts one flow per checkout ever, so running the
same file again only finds every line already known.

The file is read line by line, never whole, and a few reports are in flight at once: each one is
a store write and a workflow start, which mostly wait on the network.
"""

import asyncio
import codecs
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from cli.output import JsonFlag, console, error_console
from cli.support import (
    EXIT_BAD_INPUT,
    BadInputError,
    ShopOption,
    policy_for_shop,
    policy_override,
    print_json,
    run_command,
    settings_or_fail,
)
from domain.checkout import AbandonedCheckout
from domain.errors import InvalidInputError
from domain.policy import RecoveryPolicy
from domain.report import NotJsonError, load_json, parse_report
from domain.shops import DEFAULT_SHOP
from service.checkouts import CheckoutErasedError, CheckoutService
from workers.resources import open_service
from workers.settings import Settings

_IN_FLIGHT = 16
"""Reports running at once: enough to hide network waits, few enough not to swamp Temporal."""


class BadLineError(ValueError):
    """Why one line could not be reported."""


@dataclass(frozen=True)
class BadLine:
    line: int
    error: str


@dataclass
class ImportReport:
    lines: int = 0
    reported: int = 0
    """Checkouts new to the engine: a flow started for each."""
    already_known: int = 0
    """Reported before (by an earlier import, the API, or an earlier line): no new flow."""
    blank: int = 0
    bad: list[BadLine] = field(default_factory=list)
    policy: str = ""
    """The policy the new flows got, and why (service.reporting_policy)."""
    policy_source: str = ""

    def to_json_dict(self, source: Path) -> dict[str, Any]:
        return {
            "file": str(source),
            "lines": self.lines,
            "reported": self.reported,
            "alreadyKnown": self.already_known,
            "blankLines": self.blank,
            "badLines": len(self.bad),
            "errors": [{"line": bad.line, "error": bad.error} for bad in self.bad],
            "policy": {"name": self.policy, "source": self.policy_source},
        }


def parse_line(raw: bytes) -> AbandonedCheckout | None:
    """The checkout a line reports; None for a blank line; BadLineError saying what is wrong."""
    line = raw.removeprefix(codecs.BOM_UTF8).rstrip(b"\r\n")
    if not line.strip():
        return None
    try:
        return parse_report(load_json(line))
    except NotJsonError as err:
        raise BadLineError(str(err)) from None
    except InvalidInputError as err:
        raise BadLineError(f"invalid {err.what}: {'; '.join(err.problems)}") from None


def _numbered_lines(source: Path) -> Iterator[tuple[int, bytes]]:
    with source.open("rb") as lines:
        yield from enumerate(lines, start=1)


async def import_lines(
    source: Path,
    settings: Settings,
    override: RecoveryPolicy | None,
    on_line: Callable[[int, int], None] = lambda number, size: None,
    *,
    shop: str = DEFAULT_SHOP,
) -> ImportReport:
    """Report every line of `source` into `shop` with the policy service.reporting_policy
    chooses (`override` is --policy's); `on_line(number, bytes)` follows the reading."""
    report = ImportReport()
    async with open_service(settings) as service:
        shop_id, chosen = await policy_for_shop(service.store, settings, shop, override)
        policy = chosen.policy
        report.policy, report.policy_source = policy.name, chosen.source
        pending: set[asyncio.Task[None]] = set()
        for number, raw in _numbered_lines(source):
            report.lines = number
            on_line(number, len(raw))
            try:
                checkout = parse_line(raw)
            except BadLineError as err:
                report.bad.append(BadLine(number, str(err)))
                continue
            if checkout is None:
                report.blank += 1
                continue
            pending = await _drain(pending, below=_IN_FLIGHT)
            reporting = _report(service, policy, number, checkout, report, shop_id=shop_id)
            pending.add(asyncio.create_task(reporting))
        await _drain(pending, below=1)
    # Reports finish out of order; the error list reads best in file order.
    report.bad.sort(key=lambda bad: bad.line)
    return report


async def _report(
    service: CheckoutService,
    policy: RecoveryPolicy,
    number: int,
    checkout: AbandonedCheckout,
    report: ImportReport,
    *,
    shop_id: str,
) -> None:
    try:
        outcome = await service.report(checkout, policy, shop_id=shop_id)
    except CheckoutErasedError as err:
        report.bad.append(BadLine(number, str(err)))
        return
    if outcome.new:
        report.reported += 1
    else:
        report.already_known += 1


async def _drain(pending: set[asyncio.Task[None]], below: int) -> set[asyncio.Task[None]]:
    """Wait until fewer than `below` reports are in flight. Anything but a bad line (Temporal or
    the store down) stops the import: every later line would fail the same way, and running the
    file again later is safe."""
    while len(pending) >= below:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    return pending


def import_file(
    file: Annotated[Path, typer.Argument(help="JSON Lines: one checkout per line.")],
    policy: Annotated[
        str | None,
        typer.Option("--policy", help="Built-in policy name (default, demo) or a TOML file path."),
    ] = None,
    shop: ShopOption = DEFAULT_SHOP,
    as_json: JsonFlag = False,
) -> None:
    """Report abandoned checkouts into the shop from a JSON Lines file; bad lines are listed,
    not fatal."""
    _require_readable(file)
    settings = settings_or_fail()
    override = policy_override(settings, policy)
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[lines]} lines"),
        TimeRemainingColumn(),
        console=error_console(),
        disable=as_json,
    )
    with progress:
        bar = progress.add_task("importing", total=file.stat().st_size or None, lines=0)

        def on_line(number: int, size: int) -> None:
            progress.update(bar, advance=size, lines=number)

        try:
            report = run_command(import_lines(file, settings, override, on_line, shop=shop))
        except Exception:
            # The import stopped (the store or Temporal failed): its error is the one line to
            # read. Without a terminal, rich would print the bar's last state once more first.
            if not progress.console.is_terminal:
                progress.console.quiet = True
            raise
    if as_json:
        print_json(report.to_json_dict(file))
    else:
        _print_report(file, report)
    if report.bad:
        raise typer.Exit(EXIT_BAD_INPUT)


def _require_readable(source: Path) -> None:
    """BadInputError (exit 2), one line saying why, when `source` cannot be read: before
    anything starts."""
    try:
        with source.open("rb"):
            pass
    except IsADirectoryError:
        raise BadInputError(f"{source}: is a directory, not a JSON Lines file") from None
    except OSError as err:
        raise BadInputError(f"{source}: cannot be read: {err.strerror or err}") from None


def _print_report(source: Path, report: ImportReport) -> None:
    out = console()
    summary = Table.grid(padding=(0, 2))
    summary.add_column()
    summary.add_column(justify="right")
    summary.add_row("reported (new flows started)", str(report.reported))
    summary.add_row("already known (no new flow)", str(report.already_known))
    summary.add_row("bad lines", str(len(report.bad)))
    if report.blank:
        summary.add_row("blank lines", str(report.blank))
    out.print(f"{source}: {report.lines} lines, policy {report.policy} ({report.policy_source})")
    out.print(summary)
    if report.bad:
        bad = Table("Line", "Error", title="Bad lines (fix them and import the file again)")
        for line in report.bad:
            bad.add_row(str(line.line), line.error)
        out.print(bad)
