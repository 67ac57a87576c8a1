"""What the operator commands share: the --json flag, rich consoles and times.

Every operator command prints either one JSON document on stdout (`--json`, for scripts) or rich
tables for people. Errors go to stderr with the project's exit codes, decided for every command
in one place (cli.support): 2 for bad input, 3 for an unknown id, 1 for the environment.
"""

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout, for scripts.")
]


def console() -> Console:
    # Made per call, not at import: the console binds sys.stdout when it is built, and tests
    # (and typer's CliRunner) swap the streams between commands.
    return Console(highlight=False, soft_wrap=False)


def error_console() -> Console:
    return Console(stderr=True, highlight=False)


def iso(moment: datetime | None) -> str | None:
    """A time as JSON carries it: RFC 3339 in UTC."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def shown(moment: datetime | None) -> str:
    """A time as a table shows it: UTC to the second (column headers say UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"
