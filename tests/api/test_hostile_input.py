"""Hostile and malformed input through the running service, on SQLite and PostgreSQL alike: each
probe is a 4xx naming the field and the rule, never a 500, and nothing is stored or started.

The probes are a table: control characters in every string field of a report, over-long values,
huge numbers and amounts, dates at the ends of time, NUL in query values and operands, huge
paging numbers, and hostile path ids; then odd but valid Unicode, which must be kept as given.
A few of the report probes also go through `checkout-recovery start -`, which must exit 2 naming
the field, before it reaches any store or Temporal.
"""

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from domain.policy import parse_policy
from store.schema import checkouts, events
from store.sql import SqlStore
from tests.api.stack import BASE, Stack, running_stack
from tests.domain.test_field_contracts import FULL_REPORT, STRING_PATHS, with_value
from tests.operators.conftest import CLI
from tests.ports import free_port
from tests.postgres import PostgresServer
from tests.support import REPO, smtp_server

QUIET_POLICY = parse_policy(
    {"name": "quiet", "steps": [{"delay": "1h", "action": "email", "template": "reminder"}]},
    "test",
)
"""Nothing happens during the probes: the target checkout's first step is an hour away."""
EXISTING = "{existing}"
"""Stands for the id of a checkout the probes may aim at (reported once, never changed)."""


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    path: str
    """Under BASE, e.g. "" (report), "/query", "/{existing}/recover"."""
    body: Any = None
    raw: bytes | None = None
    """A body sent as these bytes instead of `body` as JSON."""
    field: str | None = None
    """The field that `details` must name; None for a body that is not JSON at all."""
    rule: str = ""
    """A fragment of that field's message (or of the error message when `field` is None)."""
    statuses: tuple[int, ...] = (400,)
    reader: bool = False


def _report(name: str, path: str, value: object, rule: str, at: str | None = None) -> Probe:
    return Probe(name, "POST", "", with_value(_fresh(), path, value), field=at or path, rule=rule)


def _fresh() -> dict[str, Any]:
    return {**FULL_REPORT, "checkoutId": "hostile-report", "cartId": "hostile-cart"}


def _rule_for(path: str, control: str = "\x00") -> str:
    """The rule a control character breaks in each kind of field."""
    if control == "\ud800":  # pydantic refuses a lone surrogate before any field's own rule
        return "Input should be a valid string"
    if path.endswith("email"):
        return "not a valid email address"
    if path.endswith("currency") or path.endswith("Currency"):
        return "ISO 4217"
    if path.endswith(("amount", "Amount")) and "formatted" not in path:
        return "decimal amount"
    if path == "buyerLanguage":
        return "language tag"
    if path == "buyerTimeZone":
        return "IANA time zone"
    if path.endswith("Date"):
        return "datetime"
    return "must not contain control characters"


def _at(node: Any, path: str) -> Any:
    for step in path.replace("[", ".[").split("."):
        node = node[int(step[1:-1])] if step.startswith("[") else node[step]
    return node


def _value_at(path: str) -> str:
    return str(_at(FULL_REPORT, path))


CONTROLS = ["\x1b[2J", "\x7f", "\x85", "\r\n", "\t", "\ud800", "\x08", "\x9b"]

REPORT_CONTROL_PROBES = [
    _report(f"nul in {path}", path, f"{v[:1]}\x00{v[1:]}", _rule_for(path))
    for path in STRING_PATHS
    for v in [_value_at(path)]
] + [
    _report(f"control {c!r} in {path}", path, f"{v[:1]}{c}{v[1:]}", _rule_for(path, c))
    for index, path in enumerate(STRING_PATHS)
    for v in [_value_at(path)]
    for c in [CONTROLS[index % len(CONTROLS)]]
]
REPORT_CONTROL_PROBES += [
    _report(
        f"nul in buyerInfo.{identity}",
        "buyerInfo",
        {"email": "ada@example.com", identity: "m\x00"},
        "control characters",
        at=f"buyerInfo.{identity}",
    )
    for identity in ("memberId", "userId")
]

LONG = {
    "checkoutId": 200,
    "cartId": 200,
    "buyerInfo.contactId": 200,
    "buyerInfo.visitorId": 200,
    "contactDetails.firstName": 300,
    "contactDetails.lastName": 300,
    "contactDetails.company": 300,
    "contactDetails.phone": 50,
    "subtotalPrice.formattedAmount": 100,
    "totalPrice.formattedAmount": 100,
    "lineItems[0].id": 200,
    "lineItems[0].name": 500,
    "buyerLanguage": 35,
    "buyerTimeZone": 64,
}
REPORT_LENGTH_PROBES = (
    [
        _report(f"over-long {path}", path, "a" * (limit + 1), f"at most {limit} characters")
        for path, limit in LONG.items()
    ]
    + [
        _report(
            f"over-long {path}",
            path,
            "https://shop.example/" + "a" * 2000,
            "at most 2000 characters",
        )
        for path in ("checkoutUrl", "lineItems[0].imageUrl", "lineItems[0].url")
    ]
    + [
        _report(
            "over-long email", "buyerInfo.email", "a" * 64 + "@" + "b" * 250 + ".com", "too long"
        ),
    ]
)

REPORT_NUMBER_PROBES = [
    _report("amount of 5000 digits", "totalPrice.amount", "9" * 5000, "decimal amount"),
    _report("amount of 19 digits", "subtotalPrice.amount", "1" * 19, "at most 18 before"),
    _report("amount of 7 decimals", "lineItems[0].price.amount", "0.1234567", "6 after"),
    _report("amount with exponent", "totalPrice.amount", "1e400", "decimal amount"),
    _report("amount NaN", "totalPrice.amount", "NaN", "decimal amount"),
    _report("amount Infinity", "subtotalPrice.convertedAmount", "Infinity", "decimal amount"),
    _report("amount in Arabic digits", "totalPrice.amount", "\u0661\u0662", "ASCII digits"),
    _report("amount as a number", "totalPrice.amount", 12.5, "valid string"),
    _report("quantity 10**30", "lineItems[0].quantity", 10**30, "less than or equal to 1000000"),
    _report("quantity over the bound", "lineItems[0].quantity", 1_000_001, "1000000"),
    _report("quantity negative", "lineItems[0].quantity", -1, "greater than or equal to 1"),
    _report("501 line items", "lineItems", [FULL_REPORT["lineItems"][0]] * 501, "at most 500"),
    _report("year 10000 in UTC", "createdDate", "9999-12-31T23:59:59-05:00", "must lie between"),
    _report("year 0 in UTC", "updatedDate", "0001-01-01T00:00:00+01:00", "must lie between"),
    _report("date before 1970", "createdDate", "1900-01-01T00:00:00Z", "must lie between"),
    _report("path-like language", "buyerLanguage", "../../templates", "language tag"),
    _report("path-like zone", "buyerTimeZone", "../../../etc/passwd", "IANA time zone"),
    _report(
        "url with CRLF header", "checkoutUrl", "https://a.example/\r\nSet-Cookie: x=1", "control"
    ),
    _report("javascript url", "lineItems[0].url", "javascript:alert(1)", "http(s) URL"),
    _report("huge currency", "currency", "E" * 100_000, "(100000 characters)"),
    Probe(
        "integer of 5000 digits",
        "POST",
        "",
        raw=json.dumps(_fresh()).replace('"quantity": 2', '"quantity": ' + "9" * 5000).encode(),
        rule="4300 digits",
    ),
    Probe(
        "NaN as a JSON number",
        "POST",
        "",
        raw=json.dumps(_fresh()).replace('"quantity": 2', '"quantity": NaN').encode(),
        rule="NaN is not a JSON value",
    ),
    Probe("UTF-16 body", "POST", "", raw=json.dumps(_fresh()).encode("utf-16"), rule="UTF-8"),
]


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"id": "a"}
    for _ in range(depth):
        node = {"$not": node}
    return node


def _query(name: str, query: dict[str, Any], at: str, rule: str) -> Probe:
    return Probe(
        f"query: {name}", "POST", "/query", {"query": query}, field=at, rule=rule, reader=True
    )


QUERY_PROBES = [
    _query("nul in id", {"filter": {"id": "a\x00"}}, "query.filter.id.$eq", "U+0000"),
    _query(
        "nul in email $eq",
        {"filter": {"buyerInfo.email": {"$eq": "ada\x00@example.com"}}},
        "query.filter.buyerInfo.email.$eq",
        "control characters",
    ),
    _query(
        "nul in $ne", {"filter": {"cartId": {"$ne": "\x00"}}}, "query.filter.cartId.$ne", "control"
    ),
    _query(
        "nul in $in",
        {"filter": {"checkoutId": {"$in": ["ok", "b\x00d"]}}},
        "query.filter.checkoutId.$in[1]",
        "control",
    ),
    _query(
        "nul in $hasSome",
        {"filter": {"buyerInfo.contactId": {"$hasSome": ["\x00"]}}},
        "query.filter.buyerInfo.contactId.$hasSome[0]",
        "control",
    ),
    _query(
        "nul in $startsWith",
        {"filter": {"buyerInfo.email": {"$startsWith": "a\x00"}}},
        "query.filter.buyerInfo.email.$startsWith",
        "control",
    ),
    _query(
        "nul in $gt",
        {"filter": {"orderId": {"$gt": "\x00"}}},
        "query.filter.orderId.$gt",
        "control",
    ),
    _query(
        "surrogate in $lte",
        {"filter": {"buyerInfo.visitorId": {"$lte": "\ud800"}}},
        "query.filter.buyerInfo.visitorId.$lte",
        "U+D800",
    ),
    _query(
        "nul inside $not $or",
        {"filter": {"$not": {"$or": [{"id": "a"}, {"buyerInfo.memberId": "\x00"}]}}},
        "query.filter.$not.$or[1].buyerInfo.memberId.$eq",
        "control",
    ),
    _query(
        "over-long checkoutId",
        {"filter": {"checkoutId": "x" * 201}},
        "query.filter.checkoutId.$eq",
        "at most 200",
    ),
    _query("over-long id", {"filter": {"id": "x" * 65}}, "query.filter.id.$eq", "at most 64"),
    _query(
        "101 $in values",
        {"filter": {"id": {"$in": [str(n) for n in range(101)]}}},
        "query.filter.id.$in",
        "1 to 100",
    ),
    _query(
        "date beyond year 9999",
        {"filter": {"createdDate": {"$lt": "9999-12-31T23:59:59-05:00"}}},
        "query.filter.createdDate.$lt",
        "must lie between",
    ),
    _query(
        "date before year 1",
        {"filter": {"updatedDate": {"$gte": "0001-01-01T00:00:00+01:00"}}},
        "query.filter.updatedDate.$gte",
        "must lie between",
    ),
    _query(
        "offset beyond 2**63", {"paging": {"offset": 2**64}}, "query.paging.offset", "1,000,000"
    ),
    _query(
        "offset over the bound",
        {"paging": {"offset": 1_000_001}},
        "query.paging.offset",
        "at most 1,000,000",
    ),
    _query("limit of 31 digits", {"paging": {"limit": 10**30}}, "query.paging.limit", "1 to 100"),
    _query(
        "nesting 11 deep",
        {"filter": _nested(11)},
        "query.filter" + ".$not" * 11,
        "nest more than 10",
    ),
    _query(
        "nul in a field name", {"filter": {"id\x00": "a"}}, "query.filter.id\x00", "unknown field"
    ),
    _query(
        "nul in a sort field",
        {"sort": [{"fieldName": "id\x00"}]},
        "query.sort[0].fieldName",
        "unknown field",
    ),
]


RECOVERY_PROBES = [
    Probe(
        "nul in orderId",
        "POST",
        f"/{EXISTING}/recover",
        {"orderId": "o\x00"},
        field="body.orderId",
        rule="control",
    ),
    Probe(
        "over-long orderId",
        "POST",
        f"/{EXISTING}/recover",
        {"orderId": "o" * 201},
        field="body.orderId",
        rule="at most 200",
    ),
    Probe(
        "recovery date beyond year 9999",
        "POST",
        f"/{EXISTING}/recover",
        {"checkoutRecoveredDate": "9999-12-31T23:59:59-05:00"},
        field="body.checkoutRecoveredDate",
        rule="must lie between",
    ),
    Probe(
        "nul in checkoutId to recover",
        "POST",
        "/recover",
        {"checkoutId": "hostile\x00"},
        field="body.checkoutId",
        rule="control",
    ),
    Probe(
        "over-long cartId to recover",
        "POST",
        "/recover",
        {"cartId": "c" * 201},
        field="body.cartId",
        rule="at most 200",
    ),
    Probe(
        "nul in a buyer's contactId",
        "POST",
        "/recover-buyer",
        {"buyerInfo": {"contactId": "c\x00"}},
        field="body.buyerInfo.contactId",
        rule="control",
    ),
    Probe(
        "nul in a buyer's email",
        "POST",
        "/recover-buyer",
        {"buyerInfo": {"email": "a\x00@example.com"}},
        field="body.buyerInfo.email",
        rule="not a valid email",
    ),
    Probe(
        "nul in a buyer's orderId",
        "POST",
        "/recover-buyer",
        {"buyerInfo": {"memberId": "m-1"}, "orderId": "\x00"},
        field="body.orderId",
        rule="control",
    ),
    Probe(
        "nul in a subscription url",
        "POST",
        "-subscriptions",
        {"url": "https://hooks.example/\x00"},
        field="body.url",
        rule="control",
    ),
    Probe(
        "CRLF in a subscription url",
        "POST",
        "-subscriptions",
        {"url": "https://hooks.example/\r\nX-Injected: 1"},
        field="body.url",
        rule="control",
    ),
]

PATH_PROBES = [
    Probe(
        f"{what} path id: {method} {suffix or '/'}",
        method,
        f"/{raw}{suffix}",
        {} if method == "POST" else None,
        field="path.checkout_id",
        rule=rule,
        # 404 until the routes check their path ids (api.request_body.checked_path_ids): an id
        # no checkout can have is then a 400 naming it; never a 500.
        statuses=(400, 404),
        reader=method == "GET",
    )
    for what, raw, rule in (
        ("nul", "a%00b", "control characters (U+0000 at character 2)"),
        ("65-character", "x" * 65, "at most 64 characters"),
        ("escape", "%1B%5B2J", "control characters (U+001B at character 1)"),
    )
    for method, suffix in (
        ("GET", ""),
        ("GET", "/activities"),
        ("POST", "/recover"),
        ("DELETE", ""),
    )
] + [
    Probe(
        "nul path id on the recovery link",
        "GET",
        "/a%00b/redirect-to-checkout?token=x",
        field="path.checkout_id",
        rule="control characters",
        statuses=(400, 403, 404),
    ),
]

REFUSALS = (
    REPORT_CONTROL_PROBES
    + REPORT_LENGTH_PROBES
    + REPORT_NUMBER_PROBES
    + QUERY_PROBES
    + RECOVERY_PROBES
    + PATH_PROBES
)

ODD_BUT_VALID: list[tuple[str, str, str]] = [
    ("right-to-left override in a name", "contactDetails.firstName", "\u202eevil"),
    ("emoji with joiners", "contactDetails.lastName", "👩\u200d👩\u200d👧\u200d👦"),
    ("combining accent", "contactDetails.company", "e\u0301cole"),
    ("zero-width space", "contactDetails.phone", "\u200b+44 20 7946 0000"),
    ("CJK contactId", "buyerInfo.contactId", "日本語"),
    ("astral line item name at the bound", "lineItems[0].name", "\U0001d538" * 500),
    ("non-ASCII checkoutId at the bound", "checkoutId", "Ω" + "ü" * 199),
    ("amount at the bound", "totalPrice.amount", "9" * 18 + "." + "9" * 6),
]
"""Accepted, and shown back exactly as sent (the lengths count characters, as PostgreSQL does)."""


def _reportable(checkout_id: str) -> dict[str, Any]:
    """FULL_REPORT abandoned now (its own dates would make every step overdue at once)."""
    body = {**FULL_REPORT, "checkoutId": checkout_id}
    del body["createdDate"], body["updatedDate"]
    return body


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def hostile_stack(
    request: pytest.FixtureRequest,
    dev_server_env: WorkflowEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Stack, str]]:
    """One running service per database for the whole table (the probes change nothing), and
    the id of a checkout reported beforehand for the probes to aim at."""
    data_dir = tmp_path_factory.mktemp(f"hostile-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database()
    store = SqlStore.from_url(url)
    await store.create_schema()
    try:
        with smtp_server() as smtp:
            async with running_stack(
                dev_server_env.client, store, smtp, data_dir, policy=QUIET_POLICY
            ) as stack:
                body = _reportable(f"target-{request.param}")
                reported = await _send(stack, Probe("target", "POST", "", body))
                assert reported.status_code == 201, reported.text
                yield stack, reported.json()["abandonedCheckout"]["id"]
    finally:
        await store.close()


async def _send(stack: Stack, probe: Probe, existing: str = "") -> Any:
    headers = stack.as_reader() if probe.reader else stack.as_manager()
    path = probe.path.replace(EXISTING, existing)
    url = f"{BASE}{path}"
    if probe.raw is not None or probe.body is not None:
        # Sent as bytes: httpx's own JSON encoding refuses lone surrogates.
        content = probe.raw if probe.raw is not None else json.dumps(probe.body).encode()
        headers = {**headers, "Content-Type": "application/json"}
        return await stack.http.request(probe.method, url, content=content, headers=headers)
    return await stack.http.request(probe.method, url, headers=headers)


async def _stored(store: SqlStore) -> tuple[int, int]:
    async with store.engine.connect() as conn:
        rows = await conn.scalar(select(func.count()).select_from(checkouts))
        published = await conn.scalar(select(func.count()).select_from(events))
    return int(rows or 0), int(published or 0)


def test_the_table_counts_its_probes():
    counts = {
        "report: control characters": len(REPORT_CONTROL_PROBES),
        "report: lengths": len(REPORT_LENGTH_PROBES),
        "report: numbers, amounts, dates, shapes": len(REPORT_NUMBER_PROBES),
        "query": len(QUERY_PROBES),
        "recovery and subscription bodies": len(RECOVERY_PROBES),
        "path ids": len(PATH_PROBES),
    }
    assert sum(counts.values()) == len(REFUSALS) == 142, counts
    assert len({p.name for p in REFUSALS}) == len(REFUSALS)


@pytest.mark.parametrize("probe", REFUSALS, ids=[p.name for p in REFUSALS])
async def test_hostile_input_is_refused_naming_the_field_and_nothing_is_stored(
    hostile_stack: tuple[Stack, str], probe: Probe
):
    stack, existing = hostile_stack
    before = await _stored(stack.store)

    response = await _send(stack, probe, existing)

    assert response.status_code in probe.statuses, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()
    assert error["code"] in (
        "invalid_input",
        "invalid_request",
        "invalid_json",
        "not_found",
        "invalid_link",
    )
    if response.status_code == 400 and probe.field is not None:
        named = {d["field"]: d["message"] for d in error.get("details", [])}
        assert probe.field in named, error
        assert probe.rule in named[probe.field], error
    elif response.status_code == 400:
        assert probe.rule in error["message"], error
    assert len(response.content) < 20_000  # a huge input is never echoed back
    assert await _stored(stack.store) == before
    target = await stack.store.get(existing)
    assert target is not None
    assert (target.status.value, target.order_id) == ("ABANDONED", None)


@pytest.mark.parametrize(
    ("name", "path", "value"), ODD_BUT_VALID, ids=[n for n, *_ in ODD_BUT_VALID]
)
async def test_odd_but_valid_unicode_is_accepted_and_kept_as_given(
    hostile_stack: tuple[Stack, str], name: str, path: str, value: str
):
    stack, _ = hostile_stack
    body = with_value(_reportable(f"odd-{name}"), path, value)

    response = await _send(stack, Probe(name, "POST", "", body))

    assert response.status_code == 201, response.text
    shown = await stack.http.get(
        f"{BASE}/{response.json()['abandonedCheckout']['id']}", headers=stack.as_reader()
    )
    assert shown.status_code == 200
    assert _at(shown.json()["abandonedCheckout"], path) == value


# --- the same refusals through `checkout-recovery start -` ---------------------------------

CLI_PROBES = [
    ("nul in checkoutId", "checkoutId", "x\x00y", "control characters"),
    ("nul in a line item name", "lineItems[0].name", "Sh\x00irt", "control characters"),
    ("CRLF in checkoutUrl", "checkoutUrl", "https://a.example/\r\nX: 1", "control characters"),
    ("over-long cartId", "cartId", "c" * 201, "at most 200 characters"),
    ("amount of 5000 digits", "totalPrice.amount", "9" * 5000, "not a decimal amount"),
    ("quantity 10**30", "lineItems[0].quantity", 10**30, "less than or equal to 1000000"),
    ("date beyond year 9999", "createdDate", "9999-12-31T23:59:59-05:00", "must lie between"),
]


def _dead_temporal() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens on it


@pytest.mark.parametrize(
    ("name", "path", "value", "rule"), CLI_PROBES, ids=[p[0] for p in CLI_PROBES]
)
async def test_start_refuses_the_same_fields_with_exit_2_before_anything_runs(
    store: SqlStore, database_url: str, tmp_path: Path, name: str, path: str, value: Any, rule: str
):
    body = with_value({**FULL_REPORT, "checkoutId": "cli-hostile"}, path, value)
    env = {
        **os.environ,
        "CHECKOUT_RECOVERY_DATA_DIR": str(tmp_path),
        "CHECKOUT_RECOVERY_DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": _dead_temporal(),
    }
    process = await asyncio.create_subprocess_exec(
        CLI,
        "start",
        "-",
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(json.dumps(body).encode()), timeout=60)
    stderr = err.decode(errors="replace")

    assert process.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("error: invalid abandoned checkout:"), stderr
    [line] = [line for line in stderr.splitlines() if line.startswith(f"  - {path}: ")]
    assert rule in line, stderr
    assert len(stderr) < 2_000  # the huge amount is not echoed
    assert out == b""
    assert await _stored(store) == (0, 0)
