"""What every command shares: settings, reading input files, printing JSON, and how it fails.

How a command fails is decided in one place, `CommandGroup` (the class of the `checkout-recovery`
app itself): whatever a command raises becomes an `error: ...` message on stderr and an exit code,
never a Python traceback (`--debug`, or CHECKOUT_RECOVERY_DEBUG=1, prints the traceback too):

- 2, bad input: a file, an option or a field, named in one line (InvalidInputError lists one line
  per bad field under its first);
- 3, an unknown id;
- 1, the environment: Temporal cannot be reached (at which address), the database cannot be used
  (which URL, without its password), a port is taken, a file named by the settings is missing;
  and anything unforeseen.

Commands raise; they do not print their own errors. Secrets from the settings never reach the
message, whatever the exception's text holds.
"""

import asyncio
import errno
import json
import re
import socket
import sqlite3
import sys
import tomllib
import traceback
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import SecretStr, ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from temporalio.service import RPCError, RPCStatusCode
from typer.core import TyperGroup

from domain.errors import InvalidInputError, describe_validation_error
from domain.policy import RecoveryPolicy
from domain.report import NotJsonError, load_json
from domain.shops import DEFAULT_SHOP, check_shop_id
from service.checkouts import CheckoutNotFoundError
from service.reporting_policy import ChosenPolicy, policy_for_reports
from store.engine_policy import EnginePolicyStore
from store.shops import Shop, ShopStore
from store.sql import SqlStore
from workers.policy_files import resolve
from workers.settings import Settings
from workers.worker import check_policy

T = TypeVar("T")

EXIT_ENVIRONMENT = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_FOUND = 3

DEBUG_ENV = "CHECKOUT_RECOVERY_DEBUG"
_DEBUG_KEY = "checkout_recovery.debug"


class BadInputError(ValueError):
    """Input the command cannot use, said in one line that names the file, line or option;
    exit code 2."""


class NotFoundError(LookupError):
    """Something an operator named (a task, a workflow, a key) does not exist; exit code 3."""


class SetupError(RuntimeError):
    """The environment the command runs in will not do (a setting, a port that is taken); exit
    code 1. The message says what, and where."""


class UnreachableError(SetupError):
    """A part the command needs (Temporal) cannot be reached; exit code 1. The message says
    which part, at which address."""


# --- settings and output -------------------------------------------------------------------


def settings_or_fail(policy: str | None = None) -> Settings:
    try:
        settings = Settings()
    except ValidationError as err:
        problems = describe_validation_error(err, _environment_variable)
        raise SetupError(f"invalid settings: {'; '.join(problems)}") from None
    return settings.model_copy(update={"policy": policy}) if policy else settings


def _environment_variable(loc: tuple[int | str, ...]) -> str:
    """The variable a settings problem is about: `api_port` is CHECKOUT_RECOVERY_API_PORT;
    Temporal's own variables (TEMPORAL_ADDRESS) come spelled already."""
    name = str(loc[0]) if loc else "(settings)"
    return name if name.isupper() else f"CHECKOUT_RECOVERY_{name.upper()}"


def fail(message: str, code: int = EXIT_ENVIRONMENT) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def run_command(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's async body. What it raises is reported by CommandGroup."""
    return asyncio.run(coroutine)


# --- the shop a command acts in ------------------------------------------------------------


def _checked_shop_option(shop_id: str) -> str:
    try:
        return check_shop_id(shop_id)
    except ValueError as err:
        raise BadInputError(f"--shop: {err}") from None


ShopOption = Annotated[
    str,
    typer.Option(
        "--shop",
        metavar="SHOP",
        # Checked as the command line is read: a bad slug is exit 2 before anything connects.
        callback=_checked_shop_option,
        help="The shop whose checkouts, tasks and figures the command reads or acts on.",
    ),
]
"""`--shop SHOP` (default `default`) on every command that reads or acts on a shop's data: its
reads name the shop, so another shop's id is not found; `require_shop` says an unknown shop."""


async def existing_shop(shops: ShopStore, shop_id: str) -> Shop:
    """The registered shop `shop_id`; NotFoundError (exit 3) when there is none."""
    shop = await shops.get(shop_id)
    if shop is None:
        raise NotFoundError(f"no shop with id {shop_id!r} (checkout-recovery shops list)")
    return shop


async def require_shop(store: SqlStore, shop_id: str) -> str:
    """`shop_id` when the deployment serves it; NotFoundError (exit 3) otherwise. `default`
    needs no read: it is every single-shop deployment's, registered or not."""
    if shop_id != DEFAULT_SHOP:
        await existing_shop(ShopStore(store.engine), shop_id)
    return shop_id


# --- reading input -------------------------------------------------------------------------


def read_json(source: str, label: str | None = None) -> object:
    """The JSON document in the file `source` (- for stdin); BadInputError naming `label` (the
    source, by default) when it cannot be read, is a directory, or is not JSON this engine reads.
    """
    name = label or ("stdin" if source == "-" else source)
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except IsADirectoryError:
        raise BadInputError(f"{name}: is a directory, not a JSON file") from None
    except OSError as err:
        raise BadInputError(f"{name}: cannot be read: {err.strerror or err}") from None
    try:
        return load_json(raw)
    except NotJsonError as err:
        raise BadInputError(f"{name} is {err}") from None


def checked_policy(name_or_path: str, load: Callable[[], T]) -> T:
    """`load()`, which loads the policy `name_or_path`, after checking that its file can be read
    as TOML: a policy file that cannot is one line naming the file (and the line, for TOML), not
    a traceback. A number too large for a duration or date is refused the same way."""
    try:
        path = resolve(name_or_path)
    except InvalidInputError as err:  # neither a file nor a built-in name: that is all to say
        if Path(name_or_path).is_dir():
            raise BadInputError(f"{err.what}: is a directory, not a TOML file") from None
        raise BadInputError(f"{err.what}: {'; '.join(err.problems)}") from None
    label = f"recovery policy {path}"
    try:
        tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise BadInputError(f"{label}: cannot be read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise BadInputError(f"{label}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except tomllib.TOMLDecodeError as err:
        raise BadInputError(f"{label}: not valid TOML: {err}") from None
    except RecursionError:
        raise BadInputError(f"{label}: not TOML this engine reads: nested too deeply") from None
    try:
        return load()
    except (OverflowError, RecursionError) as err:
        raise BadInputError(f"{label}: a value is out of range ({err})") from None


def configured_policy(settings: Settings) -> RecoveryPolicy:
    """The policy the settings name, its templates rendered (workers.worker.check_policy), or one
    line saying what is wrong with it: commands call this before connecting anywhere."""
    return checked_policy(settings.policy, lambda: check_policy(settings))


async def policy_for_shop(
    store: SqlStore, settings: Settings, shop: str, override: RecoveryPolicy | None
) -> tuple[str, ChosenPolicy]:
    """For a command that reports checkouts into `shop` (exit 3 when the deployment does not
    serve it): the shop and the policy its new flows get (service.reporting_policy)."""
    shop_id = await require_shop(store, shop)
    chosen = await policy_for_reports(
        EnginePolicyStore(store.engine),
        override=override,
        configured=lambda: configured_policy(settings),
        shops=ShopStore(store.engine),
        shop_id=shop_id,
    )
    return shop_id, chosen


def policy_override(settings: Settings, policy: str | None) -> RecoveryPolicy | None:
    """The policy `--policy` names on a command that reports checkouts (`start`, `import`),
    checked as the configured one is; None when the option is not given, so that the running
    engine's policy applies (service.reporting_policy)."""
    if policy is None:
        return None
    return configured_policy(settings.model_copy(update={"policy": policy}))


def require_free_port(what: str, host: str, port: int) -> None:
    """SetupError naming `what` and the address when nothing can listen on host:port, so
    that a server which could not bind never gets as far as half-starting."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as err:
        taken = err.errno == errno.EADDRINUSE
        reason = "address already in use" if taken else (err.strerror or str(err))
        raise SetupError(f"{what} cannot listen on {host}:{port}: {reason}") from None


# --- how a command fails -------------------------------------------------------------------


class CommandGroup(TyperGroup):
    """The `checkout-recovery` app: every command runs inside `invoke`, so this is where any
    exception a command raises is reported (see the module's docstring)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # the command line's own: usage errors, help, exit codes already chosen
        except Exception as err:
            if ctx.meta.get(_DEBUG_KEY):
                traceback.print_exception(err)
            code, message = explain(err)
            fail(message, code)


def set_debug(ctx: typer.Context, debug: bool) -> None:
    """Called by the app's callback with the --debug option (or CHECKOUT_RECOVERY_DEBUG)."""
    ctx.meta[_DEBUG_KEY] = debug


def explain(err: BaseException) -> tuple[int, str]:
    """The exit code and the one message a failure is reported with."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    settings = _settings_or_none()
    code, message = _classify(err, settings)
    return code, _without_secrets(message, settings)


def _classify(err: BaseException, settings: Settings | None) -> tuple[int, str]:  # noqa: PLR0911
    if isinstance(err, CheckoutNotFoundError | NotFoundError):
        return EXIT_NOT_FOUND, str(err)
    if isinstance(err, InvalidInputError):
        return EXIT_BAD_INPUT, str(err)
    if isinstance(err, BadInputError | NotJsonError):
        return EXIT_BAD_INPUT, _one_line(err)
    if isinstance(err, SetupError):
        return EXIT_ENVIRONMENT, _one_line(err)
    temporal = settings.temporal_address if settings else "the configured address"
    if _temporal_unreachable(err):
        return EXIT_ENVIRONMENT, f"cannot reach Temporal at {temporal}: {temporal_reason(err)}"
    if isinstance(err, RPCError):
        return EXIT_ENVIRONMENT, f"Temporal at {temporal} answered {err.status.name}: {err.message}"
    if _from_database(err):
        url = shown_url(settings.store_url) if settings else "the configured database"
        return EXIT_ENVIRONMENT, f"cannot use the database at {url}: {_database_reason(err)}"
    if isinstance(err, OSError):
        return EXIT_ENVIRONMENT, _os_reason(err)
    return EXIT_ENVIRONMENT, (
        f"unexpected {type(err).__name__}: {_one_line(err)} "
        f"(a bug: --debug or {DEBUG_ENV}=1 shows where)"
    )


def _temporal_unreachable(err: BaseException) -> bool:
    if isinstance(err, RPCError):
        return err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)
    if isinstance(err, RuntimeError):
        return str(err).startswith("Failed client connect")
    # An address the client cannot even parse ("invalid target URL").
    return isinstance(err, ValueError) and _innermost_module(err).startswith("temporalio")


def temporal_reason(err: BaseException) -> str:
    """Why Temporal could not be reached, without the transport's nesting of wrappers: the OS's
    or the resolver's own words when the message holds them."""
    text = _one_line(err)
    found = re.findall(r'(?:message|error): "([^"]+)"', text)
    return found[-1] if found else text.removeprefix("Failed client connect: ")


_DATABASE_PACKAGES = ("sqlalchemy", "alembic", "asyncpg", "aiosqlite", "sqlite3", "store")
_PROJECT_PACKAGES = ("domain", "service", "api", "workers", "activities", "workflows")


def _from_database(err: BaseException) -> bool:
    """The store's own errors, and an OS or import error (a refused connection, a missing
    driver, a folder that cannot be made) raised while the store was being opened or used:
    the innermost frame of ours or of a database library that the error passed decides."""
    if isinstance(err, SQLAlchemyError | sqlite3.Error):
        return True
    if type(err).__module__.partition(".")[0] in _DATABASE_PACKAGES:
        return True
    if not isinstance(err, OSError | ImportError):
        return False
    for module, function in reversed(list(_frames(err.__traceback__))):
        package = module.partition(".")[0]
        if package in _DATABASE_PACKAGES or (module, function) == _OPEN_STORE:
            return True
        if package in _PROJECT_PACKAGES:
            return False
    return False


_OPEN_STORE = ("workers.resources", "open_store")
"""Makes the data folder the SQLite store lives in."""


def _database_reason(err: BaseException) -> str:
    cause = getattr(err, "orig", None) or err  # SQLAlchemy wraps the driver's own error
    reason = _one_line(cause).split(" (Background on this error at:")[0]
    if isinstance(err, ImportError):
        reason += " (the database driver is not installed)"
    return reason


def _os_reason(err: OSError) -> str:
    if err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    return _one_line(err)


def shown_url(url: str) -> str:
    """A database URL as it may be shown: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        # Not a URL, so no telling which part is a password: name the setting instead.
        return "CHECKOUT_RECOVERY_DATABASE_URL"


def _settings_or_none() -> Settings | None:
    try:
        return Settings()
    except ValidationError:
        return None


def _secrets(settings: Settings) -> Iterator[str]:
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            yield value.get_secret_value()
    try:
        password = make_url(settings.store_url).password
    except Exception:
        password = None
    if password:
        yield str(password)


def _without_secrets(message: str, settings: Settings | None) -> str:
    if settings is None:
        return message
    for secret in sorted(_secrets(settings), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _frames(tb: TracebackType | None) -> Iterator[tuple[str, str]]:
    """(module, function) of each frame the exception went through, outermost first."""
    for frame, _ in traceback.walk_tb(tb):
        yield str(frame.f_globals.get("__name__", "")), frame.f_code.co_name


def _innermost_module(err: BaseException) -> str:
    modules = [module for module, _ in _frames(err.__traceback__)]
    return modules[-1] if modules else ""
