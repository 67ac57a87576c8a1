"""Every `checkout-recovery` command fails the same way: an `error: ...` message on stderr naming
the file, line, option or field, or the part that cannot be used and where, with exit code 2 (bad
input), 3 (unknown id) or 1 (the environment); never a Python traceback, unless asked for.

The installed command runs as a process, many at once on a thread pool (each spends a second or
two importing), so that a traceback, a hang or a crash at exit would show. Temporal is named at a
port where nothing listens (127.0.0.1:1), and each test has a data folder of its own.
"""

import json
import os
import random
import socket
import subprocess
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.support import explain
from tests.operators.conftest import CLI, DEEP, Run
from tests.ports import free_port
from tests.support import REPO, sample_checkout_data

DEAD_TEMPORAL = "127.0.0.1:1"
SECRET = "s3cret-pw"
POSTGRES_DOWN = f"postgresql+asyncpg://shop:{SECRET}@127.0.0.1:1/recovery"
POSTGRES_SHOWN = "postgresql+asyncpg://shop:***@127.0.0.1:1/recovery"
POLICY_STEP = '\n[[steps]]\ndelay = {delay}\naction = "email"\ntemplate = "reminder"\n'
_INHERITED_AWAY = ("CHECKOUT_RECOVERY_DATABASE_URL", "CHECKOUT_RECOVERY_DEBUG")
"""Set in some test environments; each case here says itself what it wants."""


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    env: dict[str, str]
    stdin: bytes = b""


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "CHECKOUT_RECOVERY_DATA_DIR": str(data_dir),
        "TEMPORAL_ADDRESS": DEAD_TEMPORAL,
        "CHECKOUT_RECOVERY_POLICY": "default",
        "COLUMNS": "200",
        **extra,
    }


def _run(case: Case) -> Run:
    inherited = {k: v for k, v in os.environ.items() if k not in _INHERITED_AWAY}
    done = subprocess.run(
        [CLI, *case.args],
        env={**inherited, **case.env},
        cwd=REPO,
        input=case.stdin,
        capture_output=True,
        timeout=90,
        check=False,
    )
    return Run(
        case.args, done.returncode, done.stdout.decode(), done.stderr.decode(errors="replace")
    )


def _run_all(cases: Sequence[Case]) -> list[Run]:
    with ThreadPoolExecutor(max_workers=4) as pool:  # as many as test_input_parsing runs
        return list(pool.map(_run, cases))


def _no_traceback(run: Run) -> None:
    assert "Traceback" not in run.stderr, run
    assert "Fatal Python error" not in run.stderr, run


def _one_line(run: Run, code: int, *fragments: str) -> None:
    """Exit `code`, and stderr is exactly one `error: ...` line holding each fragment."""
    assert run.code == code, run
    _no_traceback(run)
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run
    for fragment in fragments:
        assert fragment in lines[0], run


def _field_list(run: Run, code: int, heading: str, *fragments: str) -> None:
    """Exit `code`: an `error: invalid ...:` line, then one `  - field: problem` line per bad
    field (the form that names every bad field at once)."""
    assert run.code == code, run
    _no_traceback(run)
    first, *problems = run.stderr.splitlines()
    assert first.startswith(f"error: {heading}"), run
    assert problems and all(line.startswith("  - ") for line in problems), run
    for fragment in fragments:
        assert fragment in run.stderr, run


def _policy_file(folder: Path, name: str, delay: str) -> Path:
    path = folder / name
    path.write_text('name = "probe"\n' + POLICY_STEP.format(delay=delay))
    return path


@contextmanager
def _listening() -> Iterator[int]:
    """A port something already listens on."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield int(server.getsockname()[1])


def test_unreadable_policy_and_sample_files_are_one_line_exit_2(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    random_bytes = tmp_path / "random.bin"
    random_bytes.write_bytes(random.Random(13).randbytes(4096))
    deep = tmp_path / "deep.json"
    deep.write_bytes(DEEP)
    folder = tmp_path / "a-folder.json"
    folder.mkdir()
    not_toml = tmp_path / "broken.toml"
    not_toml.write_text('name = "probe\n[[steps]]\n')
    missing = tmp_path / "missing.json"
    sample = ("policy", "check", "default", "--checkout")
    cases = [
        (Case((*sample, str(missing)), env), f"sample checkout {missing}: cannot be read: No such"),
        (Case((*sample, str(folder)), env), f"sample checkout {folder}: is a directory"),
        (Case((*sample, str(random_bytes)), env), f"sample checkout {random_bytes} is not UTF-8"),
        (Case((*sample, str(deep)), env), f"sample checkout {deep} is not JSON this engine reads"),
        (Case(("policy", "check", str(random_bytes)), env), f"{random_bytes}: not UTF-8 text"),
        (Case(("policy", "check", str(folder)), env), f"recovery policy {folder}: "),
        (Case(("policy", "check", str(not_toml)), env), f"{not_toml}: not valid TOML: "),
        (
            Case(("start", "examples/checkout.json", "--policy", str(not_toml)), env),
            f"recovery policy {not_toml}: not valid TOML: ",
        ),
        (
            Case(("import", str(missing), "--policy", str(random_bytes)), env),
            f"{missing}: cannot be read",
        ),
    ]

    runs = _run_all([case for case, _ in cases])

    for run, (_, fragment) in zip(runs, cases, strict=True):
        _one_line(run, 2, fragment)
        assert run.stdout == "", run
    assert "(at line 1, column " in runs[6].stderr  # TOML errors say where


def test_bad_durations_in_policies_and_options_name_the_field(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    huge = _policy_file(tmp_path, "huge.toml", '"99999999999d"')
    bare = _policy_file(tmp_path, "bare.toml", "3600")
    report = json.dumps(sample_checkout_data()).encode()

    policy_huge, start_huge, policy_bare, stats_since, list_since, keys_scope, task_id = _run_all(
        [
            Case(("policy", "check", str(huge)), env),
            Case(("start", "-", "--policy", str(huge)), env, stdin=report),
            Case(("policy", "check", str(bare)), env),
            Case(("stats", "--since", "99999999999d"), env),
            Case(("checkouts", "list", "--since", "99999999999d"), env),
            Case(("keys", "create", "--scope", "everything"), env),
            Case(("tasks", "done", "99999999999999999999999"), env),
        ]
    )

    for run in (policy_huge, start_huge):
        _field_list(run, 2, f"invalid recovery policy {huge}:", "step 1 (email): delay: ")
    _field_list(policy_bare, 2, f"invalid recovery policy {bare}:", "delay: ")
    _one_line(stats_since, 2, "--since: ")
    _field_list(list_since, 2, "invalid options:", "--since: ")
    _one_line(keys_scope, 2, "--scope: ", "everything")
    assert task_id.code == 2 and "ID" in task_id.stderr, task_id  # the usage error names it
    _no_traceback(task_id)
    assert not (tmp_path / "data" / "store.db").exists()  # refused before anything opened


def test_commands_that_must_read_temporal_name_its_address(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    # Reporting needs no Temporal: the checkout is stored and its flow waits in the hand-off.
    started = _run(Case(("start", "-"), env, stdin=json.dumps(sample_checkout_data()).encode()))
    assert started.code == 0, started
    checkout_id = started.stdout.strip()

    history, history_json, reconcile, dry_run, worker, shown = _run_all(
        [
            Case(("checkouts", "history", checkout_id), env),
            Case(("checkouts", "history", checkout_id, "--json"), env),
            Case(("checkouts", "reconcile"), env),
            Case(("checkouts", "reconcile", "--dry-run", "--json"), env),
            Case(("worker",), env),
            Case(("checkouts", "show", checkout_id, "--json"), env),
        ]
    )

    for run in (history, history_json, reconcile, dry_run):
        _one_line(run, 1, f"cannot reach Temporal at {DEAD_TEMPORAL}: Connection refused")
        assert run.stdout == "", run
    assert worker.code == 1, worker
    _no_traceback(worker)
    assert f"error: cannot reach Temporal at {DEAD_TEMPORAL}" in worker.stderr, worker
    # `show` is the store's record: it answers, and says why the flow's state is missing.
    assert shown.code == 0, shown
    document = json.loads(shown.stdout)
    assert document["abandonedCheckout"]["flowState"] == "PENDING"
    assert document["workflow"]["status"] == "UNREACHABLE"
    assert f"cannot reach Temporal at {DEAD_TEMPORAL}" in document["workflow"]["error"]


def test_a_database_that_cannot_be_used_is_named_without_its_password(tmp_path: Path) -> None:
    postgres = _env(tmp_path / "data", CHECKOUT_RECOVERY_DATABASE_URL=POSTGRES_DOWN)
    lines = tmp_path / "checkouts.jsonl"
    lines.write_text(json.dumps(sample_checkout_data()) + "\n")
    report = json.dumps(sample_checkout_data()).encode()
    not_a_database = tmp_path / "garbage"
    not_a_database.mkdir()
    (not_a_database / "store.db").write_bytes(random.Random(5).randbytes(8192))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    commands: list[tuple[str, ...]] = [
        ("show", "some-id"),
        ("start", "-"),
        ("recover", "some-id"),
        ("import", str(lines)),
        ("keys", "list"),
        ("stats",),
        ("tasks", "list"),
        ("checkouts", "list"),
        ("checkouts", "show", "some-id"),
        ("checkouts", "history", "some-id"),
    ]
    cases = [Case(args, postgres, stdin=report) for args in commands]
    cases += [
        Case(("checkouts", "list"), _env(not_a_database)),
        Case(("keys", "list"), _env(a_file)),
        Case(("stats",), _env(tmp_path, CHECKOUT_RECOVERY_DATABASE_URL=f"no-url:{SECRET}@db")),
    ]

    *on_postgres, garbage, folder_is_file, no_url = _run_all(cases)

    for run in on_postgres:
        _one_line(run, 1, f"cannot use the database at {POSTGRES_SHOWN}: ", "Connect call failed")
    _one_line(
        garbage, 1, f"cannot use the database at sqlite+aiosqlite:///{not_a_database}/store.db: "
    )
    assert "file is not a database" in garbage.stderr
    _one_line(folder_is_file, 1, "cannot use the database at ", str(a_file))
    _one_line(no_url, 1, "cannot use the database at CHECKOUT_RECOVERY_DATABASE_URL: ")
    for run in (*on_postgres, no_url):
        assert SECRET not in run.stderr + run.stdout, run


def test_ports_in_use_unknown_ids_and_bad_settings(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    with _listening() as taken:
        api, smtp, dev, *unknown, settings = _run_all(
            [
                Case(("api",), {**env, "CHECKOUT_RECOVERY_API_PORT": str(taken)}),
                Case(("smtp",), {**env, "CHECKOUT_RECOVERY_SMTP_PORT": str(taken)}),
                Case(
                    ("dev",),
                    {
                        **env,
                        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
                        "CHECKOUT_RECOVERY_TEMPORAL_UI_URL": f"http://127.0.0.1:{free_port()}",
                        "CHECKOUT_RECOVERY_SMTP_PORT": str(taken),
                        "CHECKOUT_RECOVERY_API_PORT": str(free_port()),
                    },
                ),
                Case(("show", "nope"), env),
                Case(("checkouts", "show", "nope"), env),
                Case(("checkouts", "history", "nope"), env),
                Case(("keys", "revoke", "nope"), env),
                Case(("tasks", "done", "7"), env),
                Case(("show", "x"), {**env, "CHECKOUT_RECOVERY_API_PORT": "eighty"}),
            ]
        )

    _one_line(api, 1, f"the API cannot listen on 127.0.0.1:{taken}: address already in use")
    _one_line(smtp, 1, f"the SMTP server cannot listen on 127.0.0.1:{taken}: address already")
    _one_line(dev, 1, f"the SMTP server cannot listen on 127.0.0.1:{taken}: address already")
    for run, fragment in zip(
        unknown,
        ["'nope'", "'nope'", "'nope'", "no live API key with id 'nope'", "no task with id 7"],
        strict=True,
    ):
        _one_line(run, 3, fragment)
    _one_line(settings, 1, "invalid settings: CHECKOUT_RECOVERY_API_PORT: ")


def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    broken = tmp_path / "broken.toml"
    broken.write_text("name = ")

    flag, variable, plain = _run_all(
        [
            Case(("--debug", "checkouts", "history", "some-id"), env),
            Case(("policy", "check", str(broken)), {**env, "CHECKOUT_RECOVERY_DEBUG": "1"}),
            Case(("policy", "check", str(broken)), env),
        ]
    )

    for run, code in ((flag, 3), (variable, 2)):
        assert run.code == code, run
        assert "Traceback (most recent call last)" in run.stderr, run
        assert run.stderr.splitlines()[-1].startswith("error: "), run
    _one_line(plain, 2, f"recovery policy {broken}: not valid TOML")


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (
            RuntimeError(
                "Failed client connect: Server connection error: tonic::transport::Error("
                'Transport, ConnectError(ConnectError("tcp connect error", 127.0.0.1:1, Os { '
                'code: 111, kind: ConnectionRefused, message: "Connection refused" })))'
            ),
            1,
            f"cannot reach Temporal at {DEAD_TEMPORAL}: Connection refused",
        ),
        (ConnectionRefusedError(111, "Connection refused"), 1, "[Errno 111] Connection refused"),
        (KeyError("surprise"), 1, "unexpected KeyError: 'surprise' (a bug: --debug"),
        (RuntimeError(f"boom\nwith {SECRET} inside"), 1, "unexpected RuntimeError: boom with ***"),
    ],
)
def test_explain_says_what_failed_in_one_line_without_secrets(
    monkeypatch: pytest.MonkeyPatch, error: Exception, code: int, message: str
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", DEAD_TEMPORAL)
    monkeypatch.setenv("CHECKOUT_RECOVERY_DATABASE_URL", POSTGRES_DOWN)

    found_code, found = explain(error)

    assert found_code == code
    assert found.startswith(message), found
    assert "\n" not in found and SECRET not in found
