"""Validation of reported checkouts: bad input names the field and the problem."""

import json

import pytest

from domain.checkout import parse_checkout
from domain.errors import InvalidInputError
from tests.support import REPO, sample_checkout


def _problems(**overrides) -> list[str]:
    data = json.loads((REPO / "examples" / "checkout.json").read_text())
    data.update(overrides)
    with pytest.raises(InvalidInputError) as raised:
        parse_checkout(data)
    return raised.value.problems


def test_the_example_checkout_is_valid_and_keeps_camel_case_json():
    data = json.loads((REPO / "examples" / "checkout.json").read_text())
    checkout = parse_checkout(data)
    dumped = checkout.to_json_dict()
    assert dumped["totalPrice"] == {"amount": "89.90", "formattedAmount": "€89.90"}
    assert dumped["buyerInfo"]["visitorId"] == data["buyerInfo"]["visitorId"]
    assert dumped["status"] == "ABANDONED"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"currency": "EURO"}, "currency: 'EURO' is not an ISO 4217 currency code"),
        ({"totalPrice": {"amount": "12,50"}}, "totalPrice.amount:"),
        ({"totalPrice": {"amount": 12.5}}, "totalPrice.amount: Input should be a valid string"),
        ({"checkoutUrl": "javascript:alert(1)"}, "checkoutUrl:"),
        ({"buyerInfo": {"email": "not-an-address", "visitorId": "v"}}, "buyerInfo.email:"),
        ({"buyerInfo": {"email": "a@example.com"}}, "buyerInfo: needs exactly one of"),
        (
            {"buyerInfo": {"email": "a@example.com", "visitorId": "v", "memberId": "m"}},
            "buyerInfo: needs exactly one of visitorId, memberId, userId (found: visitorId, memberId)",
        ),
        ({"checkoutId": None, "cartId": None}, "(root): needs checkoutId or cartId"),
        (
            {"lineItems": [{"name": "x", "quantity": 0, "price": {"amount": "1"}}]},
            "lineItems[0].quantity:",
        ),
        ({"totalPriec": {"amount": "1"}}, "totalPriec: Extra inputs are not permitted"),
    ],
)
def test_bad_fields_are_named(overrides, expected):
    problems = _problems(**overrides)
    assert any(p.startswith(expected) or expected in p for p in problems), problems


def test_all_problems_are_listed_at_once():
    problems = _problems(currency="XXX1", checkoutUrl="ftp://x")
    assert {p.split(":")[0] for p in problems} == {"currency", "checkoutUrl"}


def test_amounts_stay_decimal_strings():
    checkout = sample_checkout(totalPrice={"amount": "0.10"})
    assert checkout.total_price.amount == "0.10"
    assert checkout.to_json_dict()["totalPrice"]["amount"] == "0.10"
