"""`--shop SHOP` on the commands that read or act on a shop's data, on each database the store
supports: two shops report the same checkoutId for the same buyer through `start --shop`, and
every read or change names one shop and sees nothing of the other's."""

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from store.shops import ShopStore
from store.sql import SqlStore
from tests.operators.conftest import CliResult, DatabaseStack, answer_json, database_stack
from tests.support import eventually, sample_checkout_data

B = "shop-b"


@pytest.fixture
async def stack(
    dev_server_env: WorkflowEnvironment, store: SqlStore, database_url: str, tmp_path: Path
) -> AsyncIterator[DatabaseStack]:
    await ShopStore(store.engine).add(B, "Shop B")
    async with database_stack(dev_server_env.client, store, database_url, tmp_path) as running:
        yield running


def _refused(result: CliResult, code: int) -> str:
    assert (result.code, result.stdout) == (code, ""), result
    return result.stderr


async def _start(stack: DatabaseStack, report: Path, *shop: str) -> str:
    started = await stack.cli("start", str(report), *shop)
    assert started.code == 0, started.stderr
    return started.stdout.strip()


async def test_each_command_reads_and_acts_in_its_own_shop(
    stack: DatabaseStack, tmp_path: Path
) -> None:
    email = f"same-{uuid.uuid4().hex[:8]}@example.com"
    report = tmp_path / "report.json"
    report.write_text(
        json.dumps(sample_checkout_data(buyerInfo={"email": email, "visitorId": "v"}))
    )
    in_default = await _start(stack, report)
    in_b = await _start(stack, report, "--shop", B)
    assert in_default != in_b  # the same checkoutId in two shops: two checkouts
    other = tmp_path / "other.json"
    # Another buyer: the frequency cap (per shop) would defer this one's first email by a day.
    another = {"email": f"other-{uuid.uuid4().hex[:8]}@example.com", "visitorId": "v"}
    other.write_text(json.dumps(sample_checkout_data(buyerInfo=another)))
    second_b = await _start(stack, other, "--shop", B)

    async def listed(*shop: str) -> list[str]:
        page = answer_json(await stack.cli("checkouts", "list", "--email", email, *shop, "--json"))
        return sorted(c["id"] for c in page["abandonedCheckouts"])

    assert await listed("--shop", B) == [in_b]
    assert await listed() == [in_default]

    # Another shop's id is not found, said exactly as an unknown id is.
    unknown = f"{uuid.uuid4()}"
    for command in (("checkouts", "show"), ("show",), ("checkouts", "history")):
        crossed = _refused(await stack.cli(*command, in_default, "--shop", B), 3)
        missing = _refused(await stack.cli(*command, unknown, "--shop", B), 3)
        assert crossed.replace(in_default, unknown) == missing
    shown = answer_json(await stack.cli("checkouts", "show", in_b, "--shop", B, "--json"))
    assert shown["abandonedCheckout"]["id"] == in_b
    _refused(await stack.cli("show", in_b), 3)  # without --shop: `default`'s
    _refused(await stack.cli("checkouts", "recover", in_default, "--shop", B), 3)
    _refused(await stack.cli("checkouts", "cancel", in_b), 3)
    still = answer_json(await stack.cli("checkouts", "show", in_default, "--json"))[
        "abandonedCheckout"
    ]
    assert still["status"] == "ABANDONED" and "stopReason" not in still

    stats_b = answer_json(await stack.cli("stats", "--shop", B, "--json"))
    stats_default = answer_json(await stack.cli("stats", "--json"))
    assert (stats_b["abandoned"], stats_default["abandoned"]) == (2, 1)

    # The flows' task steps (two seconds in): each shop lists its own.
    async def tasks_of(*shop: str) -> dict[str, int] | None:
        found = answer_json(await stack.cli("tasks", "list", *shop, "--json"))["tasks"]
        by_checkout = {t["checkoutId"]: t["id"] for t in found}
        return by_checkout if len(by_checkout) == (2 if shop else 1) else None

    tasks_b = await eventually(lambda: tasks_of("--shop", B), what="shop B's two tasks")
    tasks_default = await eventually(tasks_of, what="the default shop's task")
    assert set(tasks_b) == {in_b, second_b} and set(tasks_default) == {in_default}
    default_task = str(tasks_default[in_default])
    for verb in ("done", "reopen"):
        crossed = _refused(await stack.cli("tasks", verb, default_task, "--shop", B), 3)
        assert f"error: no task with id {default_task}" in crossed
    done = answer_json(await stack.cli("tasks", "done", str(tasks_b[in_b]), "--shop", B, "--json"))
    assert done["task"]["status"] == "DONE"
    assert answer_json(await stack.cli("tasks", "list", "--json"))["tasks"][0]["status"] == "OPEN"


async def test_an_unknown_shop_is_exit_3_and_a_bad_one_exit_2(
    stack: DatabaseStack, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps(sample_checkout_data()))
    lines = tmp_path / "import.jsonl"
    lines.write_text(json.dumps(sample_checkout_data()) + "\n")
    commands = (
        ("checkouts", "list"),
        ("checkouts", "show", "some-id"),
        ("checkouts", "recover", "some-id"),
        ("checkouts", "recover-buyer", "--email", "a@example.com"),
        ("start", str(report)),
        ("import", str(lines)),
        ("tasks", "list"),
        ("tasks", "done", "1"),
        ("stats",),
    )
    for command in commands:
        unknown = _refused(await stack.cli(*command, "--shop", "no-such-shop"), 3)
        assert "error: no shop with id 'no-such-shop'" in unknown, command
        bad = _refused(await stack.cli(*command, "--shop", "Not A Shop"), 2)
        assert "error: --shop: a shop id is" in bad, command
    # Nothing was reported anywhere.
    page = answer_json(await stack.cli("checkouts", "list", "--json"))
    assert page["abandonedCheckouts"] == []
