"""What every command shares: settings, failing with a clear message, printing JSON."""

import json
from typing import NoReturn

import typer
from pydantic import ValidationError

from workers.settings import Settings


def settings_or_fail(policy: str | None = None) -> Settings:
    try:
        settings = Settings()
    except ValidationError as err:
        fail(f"invalid settings: {err}")
    return settings.model_copy(update={"policy": policy}) if policy else settings


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
