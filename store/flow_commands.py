"""The hand-off's outbox: commands for Temporal, written with the change they belong to.

A report, a recovery, an update, an unsubscribe, a cancel or an erase writes the command that must
reach the checkout's flow (its start, a signal, deleting its execution) in the same transaction as
the change. A committed change therefore always has its command, and a rolled-back one never does.
`service.handoff` delivers the commands until Temporal confirms them and then deletes them here.

One checkout's commands are delivered in the order of `seq`: its start before any signal. Every
writer changes the checkout's row in the same transaction (PostgreSQL's row lock, SQLite's single
writer), so one checkout's commands take their numbers in the order of their changes.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import and_, bindparam, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.checkout import FlowState
from domain.flow import WORKFLOW_NAME
from store.group_commit import GroupCommitter
from store.schema import checkouts, flow_commands

_ERROR_LENGTH = 500


class CommandKind(StrEnum):
    START = "start"
    """Start the flow (the payload is its RecoveryInput); an existing flow is kept."""
    SIGNAL = "signal"
    """Signal the flow (`name`; the payload is the argument, if any)."""
    DELETE = "delete"
    """Delete the flow's execution, terminating it if it runs (the buyer's data was erased)."""


@dataclass(frozen=True)
class NewCommand:
    """A command a writer asks for; the outbox gives it its place in the checkout's order."""

    kind: CommandKind
    name: str
    payload: str | None = None


@dataclass(frozen=True)
class FlowCommand:
    seq: int
    checkout_id: str
    kind: CommandKind
    name: str
    payload: str | None
    created_date: datetime
    attempts: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class Backlog:
    count: int
    oldest: datetime | None


# Built once: reused statements skip SQLAlchemy's per-call construction and cache-key work.
_INSERT_COMMANDS = flow_commands.insert().returning(
    flow_commands.c.seq, sort_by_parameter_order=True
)
_MARK_PENDING = (
    update(checkouts)
    .where(checkouts.c.id == bindparam("checkout"))
    .values(flow_state=FlowState.PENDING)
)


async def append_command(
    conn: AsyncConnection,
    checkout_id: str,
    command: NewCommand,
    *,
    mark_pending: bool = True,
) -> FlowCommand:
    """Write `command` in the caller's transaction; `mark_pending=False` when the caller sets
    the checkout's flow_state itself (the report's insert does).

    Its time is the wall clock's, whatever time the change itself carries (a recovery may be
    dated when the buyer paid): the hand-off's grace and the reconciler's "stuck" judge by it.
    """
    [written] = await append_commands(conn, [(checkout_id, command)], mark_pending=mark_pending)
    return written


async def append_commands(
    conn: AsyncConnection, commands: list[tuple[str, NewCommand]], *, mark_pending: bool = True
) -> list[FlowCommand]:
    """`append_command` for several checkouts' commands in one statement, in the given order."""
    if not commands:
        return []
    at = datetime.now(UTC)
    rows = [
        {
            "checkout_id": checkout_id,
            "kind": command.kind,
            "name": command.name,
            "payload": command.payload,
            "created_date": at,
        }
        for checkout_id, command in commands
    ]
    seqs = (await conn.scalars(_INSERT_COMMANDS, rows)).all()
    if mark_pending:
        await conn.execute(_MARK_PENDING, [{"checkout": c} for c, _ in commands])
    return [
        FlowCommand(seq, checkout_id, command.kind, command.name, command.payload, at)
        for seq, (checkout_id, command) in zip(seqs, commands, strict=True)
    ]


async def discard_commands(conn: AsyncConnection, checkout_id: str) -> None:
    """Drop a checkout's undelivered commands: their payloads may hold the buyer's data."""
    await conn.execute(flow_commands.delete().where(flow_commands.c.checkout_id == checkout_id))


class CommandQueue:
    """Reading and settling the outbox, for the hand-off and the reconciler."""

    def __init__(self, engine: AsyncEngine, writes: GroupCommitter) -> None:
        self._engine = engine
        self._writes = writes

    async def pending(
        self,
        *,
        limit: int = 500,
        created_before: datetime | None = None,
        checkout_ids: Collection[str] | None = None,
    ) -> list[FlowCommand]:
        """Undelivered commands in delivery order (by `seq`): the oldest `limit`, or every one of
        the given checkouts. A checkout's later command is never returned without its earlier
        ones, since it has a higher `seq`."""
        query = select(flow_commands).order_by(flow_commands.c.seq)
        if checkout_ids is not None:
            if not checkout_ids:
                return []
            query = query.where(flow_commands.c.checkout_id.in_(list(checkout_ids)))
        else:
            query = query.limit(limit)
        if created_before is not None:
            query = query.where(flow_commands.c.created_date < created_before)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            FlowCommand(
                seq=row.seq,
                checkout_id=row.checkout_id,
                kind=CommandKind(row.kind),
                name=row.name,
                payload=row.payload,
                created_date=row.created_date,
                attempts=row.attempts,
                last_error=row.last_error,
            )
            for row in rows
        ]

    async def confirm(self, delivered: Sequence[FlowCommand]) -> None:
        """Temporal took these: delete them, and mark each checkout with nothing left STARTED."""
        if not delivered:
            return
        seqs = [c.seq for c in delivered]
        ids = sorted({c.checkout_id for c in delivered})

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(flow_commands.delete().where(flow_commands.c.seq.in_(seqs)))
            left = exists().where(flow_commands.c.checkout_id == checkouts.c.id)
            await conn.execute(
                update(checkouts)
                .where(and_(checkouts.c.id.in_(ids), ~left))
                .values(flow_state=FlowState.STARTED)
            )

        await self._writes.run(write)

    async def note_failure(self, failed: Sequence[FlowCommand], error: str) -> None:
        """Count an attempt that Temporal did not confirm, keeping the newest error's text."""
        if not failed:
            return
        seqs = [c.seq for c in failed]

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(
                update(flow_commands)
                .where(flow_commands.c.seq.in_(seqs))
                .values(attempts=flow_commands.c.attempts + 1, last_error=error[:_ERROR_LENGTH])
            )

        await self._writes.run(write)

    async def checkout_ids(self) -> set[str]:
        """The checkouts with an undelivered command."""
        async with self._engine.connect() as conn:
            rows = await conn.scalars(select(flow_commands.c.checkout_id).distinct())
            return {str(r) for r in rows}

    async def backlog(self) -> Backlog:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(func.count(), func.min(flow_commands.c.created_date)).select_from(
                        flow_commands
                    )
                )
            ).one()
        return Backlog(count=int(row[0]), oldest=row[1])


def start_command(flow: BaseModel) -> NewCommand:
    """Start a flow with `flow` (its RecoveryInput) as the workflow's argument."""
    return NewCommand(CommandKind.START, WORKFLOW_NAME, flow.model_dump_json())


def signal_command(name: str, arg: BaseModel | None = None) -> NewCommand:
    return NewCommand(CommandKind.SIGNAL, name, arg.model_dump_json() if arg is not None else None)


DELETE_COMMAND = NewCommand(CommandKind.DELETE, "delete_execution")
