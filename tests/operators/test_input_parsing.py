"""`start`, `update` and `import` read their input as the HTTP API does: the same fields, the engine's
own refused, and unreadable input a one-line error (exit 2), never a traceback.

Refusals run the installed `checkout-recovery` as a process, several at once (each spends about a
second importing), so that a traceback would show. Where a test must prove nothing was started,
TEMPORAL_ADDRESS names a port where nothing listens: a command that got as far as connecting
would exit 1, not 2.
"""

import asyncio
import json
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from cli.main import app
from tests.operators.conftest import CLI, DEEP, OperatorStack, Run
from tests.ports import free_port
from tests.support import REPO, sample_checkout, sample_checkout_data

ENGINE_VALUES: dict[str, Any] = {
    "id": "chosen-by-the-shop",
    "status": "RECOVERED",
    "activities": [],
    "checkoutRecoveredDate": "2026-01-01T00:00:00Z",
    "orderId": "order-1",
    "recoveryAttribution": {"kind": "organic"},
    "stopReason": "cancelled",
    "flowState": "PENDING",
}
_AT_ONCE = asyncio.Semaphore(4)


async def _cli(env: dict[str, str], *args: str, stdin: bytes = b"") -> Run:
    async with _AT_ONCE:
        process = await asyncio.create_subprocess_exec(
            CLI,
            *args,
            env={**os.environ, **env},
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return Run(args, process.returncode, out.decode(), err.decode(errors="replace"))


def _unreachable_temporal(data_dir: Path) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # nothing listens on it
        "CHECKOUT_RECOVERY_DATA_DIR": str(data_dir),
        "CHECKOUT_RECOVERY_POLICY": "default",
    }


def _stored_checkouts(data_dir: Path) -> int:
    """The checkouts in the SQLite store under `data_dir` (none when there is no store yet)."""
    path = data_dir / "store.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("select name from sqlite_master")}
        return (
            db.execute("select count(*) from checkouts").fetchone()[0]
            if "checkouts" in tables
            else 0
        )


def _refused(run: Run, *fragments: str) -> None:
    """Exit 2 with a message, no traceback."""
    assert run.code == 2, run
    assert "Traceback" not in run.stderr, run
    assert run.stderr.startswith("error: "), run
    for fragment in fragments:
        assert fragment in run.stderr, run


def _one_line(run: Run, *fragments: str) -> None:
    _refused(run, *fragments)
    assert run.stderr.count("\n") == 1, run


async def test_start_refuses_each_engine_owned_field_and_starts_nothing(tmp_path: Path) -> None:
    env = _unreachable_temporal(tmp_path)
    bodies = {name: sample_checkout_data(**{name: value}) for name, value in ENGINE_VALUES.items()}

    runs = await asyncio.gather(
        *(_cli(env, "start", "-", stdin=json.dumps(body).encode()) for body in bodies.values())
    )

    for name, run in zip(bodies, runs, strict=True):
        _refused(run, "invalid abandoned checkout:", f"  - {name}: ")
        assert run.stdout == ""
    assert (
        "id: assigned by the engine; identify the checkout by checkoutId or cartId"
        in runs[0].stderr
    )
    assert _stored_checkouts(tmp_path) == 0


async def test_start_and_update_refuse_unreadable_input_in_one_line(tmp_path: Path) -> None:
    env = _unreachable_temporal(tmp_path / "data")
    random_bytes = tmp_path / "random.bin"
    random_bytes.write_bytes(random.Random(7).randbytes(4096))
    deep = tmp_path / "deep.json"
    deep.write_bytes(DEEP)
    cases = {
        str(tmp_path / "missing.json"): "cannot be read: No such file or directory",
        str(tmp_path): "is a directory, not a JSON file",
        str(random_bytes): f"{random_bytes} is not UTF-8 text (byte ",
        str(deep): f"{deep} is not JSON this engine reads: nested too deeply",
    }

    runs = await asyncio.gather(
        *(_cli(env, command, source) for command in ("start", "update") for source in cases),
        _cli(env, "start", "-", stdin=b"\xff\xfe"),
        _cli(env, "update", "-", stdin=DEEP),
        _cli(env, "start", "-", stdin=b'{"checkoutId": }'),
    )

    *from_files, stdin_utf8, stdin_deep, stdin_json = runs
    for run, fragment in zip(from_files, [*cases.values(), *cases.values()], strict=True):
        _one_line(run, fragment)
    _one_line(stdin_utf8, "stdin is not UTF-8 text (byte 0: invalid start byte)")
    _one_line(stdin_deep, "stdin is not JSON this engine reads: nested too deeply")
    _one_line(stdin_json, "stdin is not JSON: Expecting value at column 16")
    assert _stored_checkouts(tmp_path / "data") == 0


async def test_import_refuses_each_engine_owned_field_line_by_line(
    operators: OperatorStack, tmp_path: Path
) -> None:
    env = {**operators.env, "CHECKOUT_RECOVERY_DATA_DIR": str(tmp_path)}  # a store of its own
    lines = [
        json.dumps(sample_checkout_data(**{name: value})).encode()
        for name, value in ENGINE_VALUES.items()
    ]
    source = tmp_path / "engine-fields.jsonl"
    source.write_bytes(b"\n".join([*lines, DEEP, b"\x80 random"]) + b"\n")
    random_file = tmp_path / "random.jsonl"
    random_file.write_bytes(random.Random(7).randbytes(4096))
    unreachable = _unreachable_temporal(tmp_path)

    fields, noise, missing, directory = await asyncio.gather(
        _cli(env, "import", str(source), "--json"),
        _cli(env, "import", str(random_file), "--json"),
        _cli(unreachable, "import", str(tmp_path / "missing.jsonl")),
        _cli(unreachable, "import", str(tmp_path)),
    )

    assert fields.code == 2, fields
    report = json.loads(fields.stdout)
    bad = len(ENGINE_VALUES) + 2
    assert (report["lines"], report["reported"], report["badLines"]) == (bad, 0, bad)
    errors = [error["error"] for error in report["errors"]]
    for error, name in zip(errors, ENGINE_VALUES, strict=False):
        assert error.startswith(f"invalid abandoned checkout: {name}: "), error
    assert errors[-2:] == [
        "not JSON this engine reads: nested too deeply",
        "not UTF-8 text (byte 0: invalid start byte)",
    ]
    assert noise.code == 2 and "Traceback" not in noise.stderr, noise
    assert json.loads(noise.stdout)["reported"] == 0
    _one_line(missing, f"{tmp_path / 'missing.jsonl'}: cannot be read: No such file or directory")
    _one_line(directory, f"{tmp_path}: is a directory, not a JSON Lines file")
    assert _stored_checkouts(tmp_path) == 0


async def test_update_names_the_checkout_by_checkout_id_or_by_its_id(
    operators: OperatorStack,
) -> None:
    """In-process (CliRunner), as the other operator tests run commands: this is about what
    update accepts, not about how the process fails."""
    stack = operators
    data = sample_checkout_data()
    checkout_id = await stack.report(sample_checkout(**data))
    item = {"name": "Wool scarf", "quantity": 1, "price": {"amount": "19.00"}}
    by_reference = {**data, "lineItems": [item]}
    by_id = {"abandonedCheckout": {**data, "id": checkout_id, "lineItems": [item, item]}}
    engine_field = {**data, "id": checkout_id, "status": "RECOVERED"}

    first = await _update(stack, by_reference)
    after_first = await stack.store.get(checkout_id)
    second = await _update(stack, by_id)
    after_second = await stack.store.get(checkout_id)
    refused = await _update(stack, engine_field)
    after_refused = await stack.store.get(checkout_id)
    await stack.service.cancel(checkout_id)

    assert first.exit_code == 0 and first.stdout.strip() == checkout_id, first.stderr
    assert after_first is not None and [i.name for i in after_first.line_items] == ["Wool scarf"]
    assert second.exit_code == 0 and second.stdout.strip() == checkout_id, second.stderr
    assert after_second is not None and len(after_second.line_items) == 2
    assert refused.exit_code == 2
    assert "status: set by the engine, not by an update" in refused.stderr
    assert after_refused is not None and after_refused.status.value == "ABANDONED"
    assert len(after_refused.line_items) == 2


async def _update(stack: OperatorStack, body: object) -> Result:
    def invoke() -> Result:
        return CliRunner().invoke(app, ["update", "-"], input=json.dumps(body), env=stack.env)

    return await asyncio.to_thread(invoke)
