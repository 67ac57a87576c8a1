"""`import FILE`: good lines reported, known ones counted, every bad line named; safe to rerun."""

import json
import re
from pathlib import Path
from typing import Any

from domain.checkout import CheckoutStatus
from service.checkouts import derive_checkout_id
from tests.operators.conftest import OperatorStack
from tests.support import sample_checkout, sample_checkout_data


def _line(data: Any) -> bytes:
    return json.dumps(data).encode() + b"\n"


async def test_import_reports_good_lines_and_lists_every_bad_one(
    operators: OperatorStack, tmp_path: Path
) -> None:
    stack = operators
    first, second = sample_checkout_data(), sample_checkout_data()
    known = sample_checkout_data()
    await stack.report(sample_checkout(**known))  # reported through the service before the import
    bad_fields = sample_checkout_data(currency="EURO", buyerInfo={"email": "x@example.com"})
    lines = [
        _line(first),
        _line(second),
        b"\n",
        b'{"checkoutId": "oops"\n',
        _line(first),  # the same checkout twice in one file
        _line(bad_fields),
        _line([1, 2]),
        _line(known),
        _line(sample_checkout_data(id="chosen-by-the-shop")),
        b"\xff\xfe not text\n",
    ]
    source = tmp_path / "checkouts.jsonl"
    source.write_bytes(b"".join(lines))
    errors = [
        {
            "line": 4,
            "error": "not JSON: Expecting ',' delimiter at column 22",
        },
        {
            "line": 6,
            "error": "invalid abandoned checkout: buyerInfo: needs exactly one of "
            "visitorId, memberId, userId (found: none); currency: 'EURO' is not an ISO 4217 "
            "currency code such as 'EUR' or 'USD'",
        },
        {"line": 7, "error": "invalid abandoned checkout: (root): must be a JSON object"},
        {
            "line": 9,
            "error": "invalid abandoned checkout: id: assigned by the engine; identify the "
            "checkout by checkoutId or cartId",
        },
        {"line": 10, "error": "not UTF-8 text (byte 0: invalid start byte)"},
    ]

    once = await stack.cli("import", str(source), "--json")
    again = await stack.cli("import", str(source), "--json")
    readable = await stack.cli("import", str(source))

    assert once.code == 2, once.stderr
    answer = json.loads(once.stdout)
    # The operators' stack runs a worker, which published its policy: the import uses that one.
    policy = answer.pop("policy")
    assert policy["name"] == "operator-test"
    assert policy["source"].startswith("the running engine's, published at ")
    assert answer == {
        "file": str(source),
        "lines": 10,
        "reported": 2,
        "alreadyKnown": 2,
        "blankLines": 1,
        "badLines": 5,
        "errors": errors,
    }
    assert once.stderr == ""  # no progress bar in JSON mode
    assert again.code == 2
    second_run = json.loads(again.stdout)
    assert (second_run["reported"], second_run["alreadyKnown"]) == (0, 4)
    assert second_run["errors"] == errors
    assert readable.code == 2
    assert re.search(r"already known \(no new flow\) +4\n", readable.stdout)
    assert "not UTF-8 text (byte 0: invalid start byte)" in readable.stdout

    for data in (first, second):
        checkout_id = derive_checkout_id(sample_checkout(**data))
        stored = await stack.store.get(checkout_id)
        assert stored is not None and stored.status is CheckoutStatus.ABANDONED
        description = await stack.service.handle(checkout_id).describe()
        assert description.status is not None and description.status.name == "RUNNING"
        await stack.service.cancel(checkout_id)


async def test_import_of_a_clean_file_exits_zero(operators: OperatorStack, tmp_path: Path) -> None:
    source = tmp_path / "one.jsonl"
    source.write_bytes(_line(sample_checkout_data()))
    result = await operators.cli("import", str(source), "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["reported"] == 1
    assert json.loads(result.stdout)["errors"] == []
    missing = await operators.cli("import", str(tmp_path / "nowhere.jsonl"))
    assert missing.code == 2 and "cannot be read: No such file or directory" in missing.stderr
