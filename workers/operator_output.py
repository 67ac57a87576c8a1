"""What the operator commands share: the --json flag, rich consoles, times, and exit codes.

Every operator command prints either one JSON document on stdout (`--json`, for scripts) or rich
tables for people. Errors go to stderr with the project's exit codes: 2 for bad input, 3 for an
unknown id (see workers.cli_support.fail).
"""

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from domain.errors import InvalidInputError
from service.checkouts import CheckoutNotFoundError
from workers.cli_support import fail

T = TypeVar("T")

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout, for scripts.")
]

EXIT_BAD_INPUT = 2
EXIT_NOT_FOUND = 3


class NotFoundError(LookupError):
    """Something an operator named (a task, a workflow) does not exist; exit code 3."""


class UnreachableError(RuntimeError):
    """A part the command needs (Temporal) cannot be reached; exit code 1, no traceback."""


def console() -> Console:
    # Made per call, not at import: the console binds sys.stdout when it is built, and tests
    # (and typer's CliRunner) swap the streams between commands.
    return Console(highlight=False, soft_wrap=False)


def error_console() -> Console:
    return Console(stderr=True, highlight=False)


def run_command(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's async body; unknown ids exit 3, bad input 2, an unreachable Temporal 1,
    each with its message on stderr."""
    try:
        return asyncio.run(coroutine)
    except (CheckoutNotFoundError, NotFoundError) as err:
        fail(str(err), code=EXIT_NOT_FOUND)
    except InvalidInputError as err:
        fail(str(err), code=EXIT_BAD_INPUT)
    except UnreachableError as err:
        fail(str(err))


def iso(moment: datetime | None) -> str | None:
    """A time as JSON carries it: RFC 3339 in UTC."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def shown(moment: datetime | None) -> str:
    """A time as a table shows it: UTC to the second (column headers say UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"
