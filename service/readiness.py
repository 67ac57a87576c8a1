"""Readiness: whether a process can do its work now, check by check, each named in the answer.

Liveness (`/healthz`) only says the process answers; readiness says its dependencies do: the store
answers a query, Temporal answers its health check, and the hand-off is not stuck (no command has
waited for Temporal longer than a threshold). The API serves this as `/readyz`; the CLI's `health`
command adds the SMTP relay for workers. Every check has a short timeout, so a probe never hangs
on a dependency that does not answer; what failed is named with its reason, never with secrets
(a database URL's password, say): reasons are exception types and messages of connection errors.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.client import Client

from service.handoff import Handoff

CHECK_TIMEOUT_SECONDS = 3.0
"""How long one check may take before it counts as failed."""
_DETAIL_LENGTH = 300

Check = Callable[[], Awaitable[str]]
"""A check: returns a short detail when the dependency is fine, raises when it is not."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Readiness:
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failed(self) -> list[str]:
        return [check.name for check in self.checks if not check.ok]

    def to_json(self) -> dict[str, object]:
        return {
            "status": "ok" if self.ok else "unavailable",
            "failed": self.failed,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks},
        }


class CheckFailedError(RuntimeError):
    """A dependency that answered, but not as readiness needs; its message is the detail."""


async def run_checks(
    checks: Mapping[str, Check], seconds_each: float = CHECK_TIMEOUT_SECONDS
) -> Readiness:
    """Every check at once, each within `seconds_each`; the answer keeps the order given."""

    async def one(name: str, check: Check) -> CheckResult:
        try:
            async with asyncio.timeout(seconds_each):
                return CheckResult(name, True, await check())
        except TimeoutError:
            return CheckResult(name, False, f"no answer within {seconds_each:g}s")
        except Exception as err:
            return CheckResult(name, False, _reason(err))

    results = await asyncio.gather(*(one(name, check) for name, check in checks.items()))
    return Readiness(tuple(results))


def temporal_check(client: Client) -> Check:
    """Temporal's gRPC health check (a lazy client connects here first)."""

    async def check() -> str:
        await client.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS))
        return "serving"

    return check


def store_check(handoff: Handoff) -> Check:
    """A trivial query on the store: the outbox's size (which also updates its gauges)."""

    async def check() -> str:
        backlog = await handoff.backlog()
        return f"answered; {backlog.count} command(s) waiting for Temporal"

    return check


def backlog_check(handoff: Handoff, max_age: timedelta) -> Check:
    """Fails when the oldest command not yet confirmed by Temporal is older than `max_age`: the
    hand-off is stuck (Temporal refuses it, or no worker delivers), and changes do not reach
    their flows."""

    async def check() -> str:
        backlog = await handoff.backlog()
        if backlog.oldest is None:
            return "empty"
        age = datetime.now(UTC) - backlog.oldest
        if age > max_age:
            raise CheckFailedError(
                f"oldest of {backlog.count} command(s) has waited {age.total_seconds():.0f}s "
                f"(more than {max_age.total_seconds():.0f}s)"
            )
        return f"{backlog.count} command(s), oldest {age.total_seconds():.0f}s"

    return check


def _reason(err: BaseException) -> str:
    if isinstance(err, CheckFailedError):
        return str(err)[:_DETAIL_LENGTH]
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    reason = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return reason[:_DETAIL_LENGTH]
