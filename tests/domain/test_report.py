"""What a report may carry, for every entry point at once: the API, `start` and `import` all read
reports with parse_report, `update` reads snapshots with parse_update, and all of them read their
bytes with load_json."""

import pytest

from domain.errors import InvalidInputError
from domain.report import ENGINE_OWNED, NotJsonError, load_json, parse_report, parse_update
from tests.support import sample_checkout_data

ENGINE_VALUES = {
    "id": "chosen-by-the-shop",
    "status": "RECOVERED",
    "activities": [],
    "checkoutRecoveredDate": "2026-01-01T00:00:00Z",
    "orderId": "order-1",
    "recoveryAttribution": {"kind": "organic"},
    "stopReason": "cancelled",
    "flowState": "PENDING",
}
SNAKE_CASE = {
    "checkoutRecoveredDate": "checkout_recovered_date",
    "orderId": "order_id",
    "recoveryAttribution": "recovery_attribution",
    "stopReason": "stop_reason",
    "flowState": "flow_state",
}


def _problems(parse, body: object) -> list[str]:
    with pytest.raises(InvalidInputError) as raised:
        parse(body)
    return raised.value.problems


def test_every_engine_owned_field_is_listed() -> None:
    assert {"id", *ENGINE_OWNED} == set(ENGINE_VALUES)


@pytest.mark.parametrize(
    "spelling",
    [*ENGINE_VALUES, *SNAKE_CASE.values(), "_id"],
)
def test_a_report_may_not_set_an_engine_owned_field_however_spelled(spelling: str) -> None:
    field = {v: k for k, v in SNAKE_CASE.items()}.get(spelling, spelling.lstrip("_"))
    body = sample_checkout_data(**{spelling: ENGINE_VALUES[field]})

    problems = _problems(parse_report, body)

    assert len(problems) == 1
    assert problems[0].startswith(f"{spelling}: ")
    assert "engine" in problems[0]


def test_a_report_names_every_engine_owned_field_it_sets() -> None:
    problems = _problems(parse_report, {"abandonedCheckout": sample_checkout_data(**ENGINE_VALUES)})
    assert [p.split(":")[0] for p in problems] == ["id", *ENGINE_OWNED]


def test_an_empty_sdk_id_is_let_through_and_a_field_counts_once_however_spelled() -> None:
    checkout = parse_report(sample_checkout_data(_id="", _createdDate="2026-11-20T08:00:00Z"))
    assert checkout.id is None and checkout.created_date is not None
    twice = sample_checkout_data(checkout_id="co-2")
    assert _problems(parse_report, twice) == [
        "checkout_id: given twice (as checkoutId and checkout_id)"
    ]


def test_an_update_may_name_the_checkout_by_its_id_but_set_nothing_else_of_the_engine() -> None:
    assert parse_update(sample_checkout_data(id="abc")).id == "abc"
    assert parse_update({"abandonedCheckout": sample_checkout_data(id="")}).id is None
    body = sample_checkout_data(id="abc", status="ABANDONED", activities=[])
    assert _problems(parse_update, body) == [
        "status: set by the engine, not by an update",
        "activities: set by the engine, not by an update",
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe{}", "not UTF-8 text (byte 0: invalid start byte)"),
        (b'{"checkoutId": "oops"', "not JSON: Expecting ',' delimiter at column 22"),
        (b'{\n  "checkoutId": oops\n}', "not JSON: Expecting value at line 2 column 17"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON this engine reads: nested too deeply"),
        (b"{" + b'"a":{' * 100_000, "not JSON this engine reads: nested too deeply"),
        (b"1" * 5000, "not JSON this engine reads: Exceeds the limit (4300 digits)"),
    ],
    ids=[
        "invalid-utf8",
        "invalid-json",
        "invalid-json-line-2",
        "deep-arrays",
        "deep-objects",
        "huge-int",
    ],
)
def test_bytes_that_are_not_json_say_why_in_one_line(raw: bytes, message: str) -> None:
    with pytest.raises(NotJsonError) as raised:
        load_json(raw)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_json_with_a_byte_order_mark_reads() -> None:
    assert load_json(b'\xef\xbb\xbf{"a": [1]}') == {"a": [1]}
