"""One input contract per field: every string a report carries refuses control characters, every
bounded one its limit (the same as the store's column where it has one), amounts, dates, query
values, paging numbers and policy durations their documented bounds; each refusal names the
field and the rule."""

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain import checkout as contract
from domain.durations import MAX_DURATION, parse_duration, parse_moment
from domain.errors import InvalidInputError
from domain.policy import parse_policy
from domain.query import MAX_LIST_VALUES, MAX_OFFSET, parse_query
from domain.report import NotJsonError, load_json, parse_report
from store.schema import checkouts

FULL_REPORT: dict[str, Any] = {
    "checkoutId": "co-1",
    "cartId": "cart-1",
    "buyerInfo": {"contactId": "c-1", "email": "ada@example.com", "visitorId": "v-1"},
    "buyerLanguage": "en",
    "contactDetails": {
        "firstName": "Ada",
        "lastName": "Lovelace",
        "phone": "+44 20 7946 0000",
        "company": "Analytical Engines",
    },
    "currency": "EUR",
    "conversionCurrency": "GBP",
    "subtotalPrice": {
        "amount": "84.00",
        "convertedAmount": "72.00",
        "formattedAmount": "€84.00",
        "formattedConvertedAmount": "£72.00",
    },
    "totalPrice": {"amount": "89.90", "formattedAmount": "€89.90"},
    "lineItems": [
        {
            "id": "li-1",
            "name": "Linen shirt",
            "quantity": 2,
            "price": {"amount": "30.00", "formattedAmount": "€30.00"},
            "imageUrl": "https://shop.example/i/1.jpg",
            "url": "https://shop.example/p/1",
        }
    ],
    "checkoutUrl": "https://shop.example/checkout?id=1",
    "buyerTimeZone": "Europe/Berlin",
    "createdDate": "2026-11-20T10:00:00Z",
    "updatedDate": "2026-11-20T10:05:00Z",
}


def _string_paths(value: object, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [
            path
            for key, item in value.items()
            for path in _string_paths(item, f"{prefix}.{key}" if prefix else key)
        ]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _string_paths(item, f"{prefix}[{i}]")]
    return [prefix] if isinstance(value, str) else []


STRING_PATHS = _string_paths(FULL_REPORT)


def with_value(body: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A deep copy of `body` with `value` at `path` (`lineItems[0].price.amount`)."""
    changed = copy.deepcopy(body)
    node: Any = changed
    steps = path.replace("[", ".[").split(".")
    for step in steps[:-1]:
        node = node[int(step[1:-1])] if step.startswith("[") else node[step]
    last = steps[-1]
    if last.startswith("["):
        node[int(last[1:-1])] = value
    else:
        node[last] = value
    return changed


def _problems(body: object) -> list[str]:
    with pytest.raises(InvalidInputError) as raised:
        parse_report(body)
    return raised.value.problems


def _only_problem_at(body: object, path: str) -> str:
    problems = _problems(body)
    assert [p.split(": ")[0] for p in problems] == [path], problems
    return problems[0].split(": ", 1)[1]


def test_the_full_report_is_accepted():
    assert parse_report(FULL_REPORT).checkout_id == "co-1"
    assert len(STRING_PATHS) == 28


def _inserted(value: str, text: str) -> str:
    return value[:1] + text + value[1:]  # inside: leading and trailing whitespace is stripped


@pytest.mark.parametrize("path", STRING_PATHS)
@pytest.mark.parametrize("control", ["\x00", "\x1b", "\x7f", "\x85", "\r\n", "\ud800"])
def test_every_string_field_refuses_control_characters(path: str, control: str):
    body = with_value(FULL_REPORT, path, _inserted(_value_at(path), control))
    assert _only_problem_at(body, path)


@pytest.mark.parametrize("identity", ["memberId", "userId"])
def test_the_other_buyer_ids_refuse_nul_and_length_alike(identity: str):
    buyer = {"email": "ada@example.com", identity: "m\x00"}
    message = _only_problem_at({**FULL_REPORT, "buyerInfo": buyer}, f"buyerInfo.{identity}")
    assert "control characters (U+0000 at character 2)" in message
    buyer[identity] = "m" * 201
    message = _only_problem_at({**FULL_REPORT, "buyerInfo": buyer}, f"buyerInfo.{identity}")
    assert "at most 200 characters" in message


def _value_at(path: str) -> str:
    node: Any = FULL_REPORT
    for step in path.replace("[", ".[").split("."):
        node = node[int(step[1:-1])] if step.startswith("[") else node[step]
    assert isinstance(node, str)
    return node


LENGTH_BOUNDS = {
    "checkoutId": contract.MAX_ID_LENGTH,
    "cartId": contract.MAX_ID_LENGTH,
    "buyerInfo.contactId": contract.MAX_ID_LENGTH,
    "buyerInfo.visitorId": contract.MAX_ID_LENGTH,
    "contactDetails.firstName": contract.MAX_NAME_LENGTH,
    "contactDetails.lastName": contract.MAX_NAME_LENGTH,
    "contactDetails.company": contract.MAX_NAME_LENGTH,
    "contactDetails.phone": contract.MAX_PHONE_LENGTH,
    "subtotalPrice.formattedAmount": contract.MAX_LABEL_LENGTH,
    "subtotalPrice.formattedConvertedAmount": contract.MAX_LABEL_LENGTH,
    "lineItems[0].id": contract.MAX_ID_LENGTH,
    "lineItems[0].name": contract.MAX_ITEM_NAME_LENGTH,
    "buyerLanguage": contract.MAX_LANGUAGE_LENGTH,
    "buyerTimeZone": contract.MAX_TIME_ZONE_LENGTH,
}
URL_PATHS = ["checkoutUrl", "lineItems[0].imageUrl", "lineItems[0].url"]


@pytest.mark.parametrize(("path", "limit"), LENGTH_BOUNDS.items())
def test_bounded_text_is_accepted_at_its_limit_and_refused_beyond(path: str, limit: int):
    if path not in ("buyerLanguage", "buyerTimeZone"):  # not free text: only the refusal applies
        parse_report(with_value(FULL_REPORT, path, "a" * limit))
    message = _only_problem_at(with_value(FULL_REPORT, path, "a" * (limit + 1)), path)
    assert f"at most {limit} characters" in message


@pytest.mark.parametrize("path", URL_PATHS)
def test_urls_are_bounded(path: str):
    base = "https://shop.example/"
    parse_report(with_value(FULL_REPORT, path, base + "a" * (contract.MAX_URL_LENGTH - len(base))))
    too_long = base + "a" * (contract.MAX_URL_LENGTH - len(base) + 1)
    assert "at most 2000 characters" in _only_problem_at(
        with_value(FULL_REPORT, path, too_long), path
    )


def test_lengths_match_the_store_columns():
    columns: dict[str, int] = {
        column.name: getattr(column.type, "length", 0) or 0 for column in checkouts.c
    }
    assert columns["id"] == contract.MAX_CHECKOUT_ID_LENGTH
    for name in ("checkout_id", "cart_id", "order_id", "buyer_contact_id", "buyer_visitor_id"):
        assert columns[name] == contract.MAX_ID_LENGTH, name
    for name in ("buyer_member_id", "buyer_user_id"):
        assert columns[name] == contract.MAX_ID_LENGTH, name
    assert columns["buyer_email"] == contract.MAX_EMAIL_LENGTH
    # The longest amount (sign, digits, point, decimals) fits the recovered_amount column.
    longest = 1 + contract.MAX_AMOUNT_DIGITS + 1 + contract.MAX_AMOUNT_DECIMALS
    assert longest <= columns["recovered_amount"]


def test_odd_but_valid_unicode_is_kept_as_given():
    odd = {
        "contactDetails": {
            "firstName": "\u202eevil",  # right-to-left override: a format character, allowed
            "lastName": "👩\u200d👩\u200d👧",
            "company": "e\u0301cole",
        },
        "checkoutId": "Ω" + "ü" * (contract.MAX_ID_LENGTH - 1),
    }
    checkout = parse_report({**FULL_REPORT, **odd})
    assert checkout.contact_details.first_name == "\u202eevil"
    assert checkout.contact_details.last_name == "👩\u200d👩\u200d👧"
    assert checkout.contact_details.company == "e\u0301cole"
    assert checkout.checkout_id == odd["checkoutId"]


@pytest.mark.parametrize(
    "amount",
    [
        "1" * 5000,
        "1" * (contract.MAX_AMOUNT_DIGITS + 1),
        "0." + "1" * (contract.MAX_AMOUNT_DECIMALS + 1),
        "1e3",
        "NaN",
        "Infinity",
        "\u0661\u0662\u066b\u0665",  # Arabic-Indic digits: Decimal reads them, nothing downstream should
        "+1.00",
        ".5",
        "5.",
        "1_000",
        "12,50",
        "",
    ],
)
def test_amounts_are_bounded_plain_decimals(amount: str):
    for path in ("totalPrice.amount", "subtotalPrice.convertedAmount", "lineItems[0].price.amount"):
        message = _only_problem_at(with_value(FULL_REPORT, path, amount), path)
        assert "is not a decimal amount such as '12.50'" in message
        assert len(message) < 200  # a huge amount is not echoed back


@pytest.mark.parametrize(
    "amount", ["0", "-5.00", "1" * contract.MAX_AMOUNT_DIGITS + "." + "9" * 6, "0012.5"]
)
def test_amounts_within_the_bounds_are_kept_as_given(amount: str):
    assert parse_report(
        with_value(FULL_REPORT, "totalPrice.amount", amount)
    ).total_price.amount == (amount)


@pytest.mark.parametrize(
    ("path", "value", "rule"),
    [
        ("lineItems[0].quantity", 10**30, "less than or equal to 1000000"),
        ("lineItems[0].quantity", contract.MAX_QUANTITY + 1, "less than or equal to 1000000"),
        ("lineItems", [FULL_REPORT["lineItems"][0]] * 501, "at most 500 items"),
        ("createdDate", "9999-12-31T23:59:59-05:00", "must lie between 1970-01-01 and 9000-01-01"),
        ("updatedDate", "0001-01-01T00:00:00+01:00", "must lie between"),
        ("createdDate", "1969-12-31T23:59:59Z", "must lie between"),
        ("buyerLanguage", "../../etc", "not a language tag"),
        ("buyerTimeZone", "../../etc/passwd", "not an IANA time zone"),
        ("checkoutUrl", "https://[::1/", "not an http(s) URL"),
        ("checkoutUrl", "http://:80/", "not an http(s) URL"),
        ("currency", "E" * 10_000, "(10000 characters) is not an ISO 4217 currency code"),
    ],
)
def test_numbers_dates_and_shapes_are_bounded(path: str, value: object, rule: str):
    assert rule in _only_problem_at(with_value(FULL_REPORT, path, value), path)


def test_json_constants_that_are_not_json_are_refused():
    with pytest.raises(NotJsonError, match="NaN is not a JSON value"):
        load_json(b'{"lineItems": [{"quantity": NaN}]}')
    with pytest.raises(NotJsonError, match="Infinity is not a JSON value"):
        load_json(b"[Infinity]")


# --- query values: the same rules as the fields they are compared with ---------------------


def _query_problems(query: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidInputError) as raised:
        parse_query({"query": query})
    return raised.value.problems


@pytest.mark.parametrize(
    ("query", "path", "rule"),
    [
        ({"filter": {"id": "a\x00b"}}, "query.filter.id.$eq", "U+0000 at character 2"),
        (
            {"filter": {"buyerInfo.email": {"$ne": "\x00"}}},
            "query.filter.buyerInfo.email.$ne",
            "control",
        ),
        ({"filter": {"cartId": {"$in": ["a", "b\x00"]}}}, "query.filter.cartId.$in[1]", "control"),
        (
            {"filter": {"orderId": {"$hasSome": ["\x1b"]}}},
            "query.filter.orderId.$hasSome[0]",
            "control",
        ),
        (
            {"filter": {"checkoutId": {"$startsWith": "\x00"}}},
            "query.filter.checkoutId.$startsWith",
            "control",
        ),
        (
            {"filter": {"buyerInfo.userId": {"$gt": "\ud800"}}},
            "query.filter.buyerInfo.userId.$gt",
            "U+D800",
        ),
        ({"filter": {"id": "x" * 65}}, "query.filter.id.$eq", "at most 64 characters"),
        ({"filter": {"checkoutId": "x" * 201}}, "query.filter.checkoutId.$eq", "at most 200"),
        (
            {"filter": {"buyerInfo.email": "x" * 321}},
            "query.filter.buyerInfo.email.$eq",
            "at most 320",
        ),
        (
            {"filter": {"id": {"$in": ["a"] * (MAX_LIST_VALUES + 1)}}},
            "query.filter.id.$in",
            "list of 1 to 100 values",
        ),
        (
            {"filter": {"createdDate": {"$gt": "9999-12-31T23:59:59-05:00"}}},
            "query.filter.createdDate.$gt",
            "must lie between",
        ),
        ({"paging": {"offset": 2**64}}, "query.paging.offset", "at most 1,000,000"),
        ({"paging": {"offset": MAX_OFFSET + 1}}, "query.paging.offset", "at most 1,000,000 (got"),
        ({"paging": {"limit": 10**30}}, "query.paging.limit", "from 1 to 100"),
    ],
)
def test_query_values_follow_the_field_contracts(query: dict[str, Any], path: str, rule: str):
    problems = _query_problems(query)
    assert any(p.startswith(f"{path}: ") and rule in p for p in problems), problems
    assert all(len(p) < 300 for p in problems)  # nothing huge echoed


def test_query_values_at_the_bounds_are_accepted():
    parse_query(
        {
            "query": {
                "filter": {
                    "id": "x" * 64,
                    "checkoutId": {"$in": ["y" * 200] * MAX_LIST_VALUES},
                    "createdDate": {"$gte": "1970-01-01T00:00:00Z"},
                },
                "paging": {"offset": MAX_OFFSET},
            }
        }
    )


# --- policy durations ----------------------------------------------------------------------


def _policy(**changes: Any) -> dict[str, Any]:
    step = {"delay": "1h", "action": "email", "template": "reminder"} | changes.pop("step", {})
    return {"name": "p", "steps": [step], **changes}


@pytest.mark.parametrize(
    ("policy", "where", "rule"),
    [
        (_policy(step={"delay": 3600}), "step 1 (email): delay", "written like '90s'"),
        (_policy(step={"delay": 1.5}), "step 1 (email): delay", "written like '90s'"),
        (_policy(step={"delay": True}), "step 1 (email): delay", "written like '90s'"),
        (_policy(step={"delay": "99999999999d"}), "step 1 (email): delay", "longer than 3650d"),
        (_policy(step={"delay": "9" * 5000 + "d"}), "step 1 (email): delay", "not a duration"),
        (_policy(step={"delay": "PT1H"}), "step 1 (email): delay", "not a duration"),
        (_policy(step={"delay": "\u0661h"}), "step 1 (email): delay", "not a duration"),
        (_policy(listen_window="3651d"), "listen_window", "longer than 3650d"),
        (_policy(max_age=86400), "max_age", "written like '90s'"),
        (
            _policy(frequency_cap={"window": "5200w"}),
            "frequency_cap.window",
            "longer than 3650d",
        ),
    ],
)
def test_policy_durations_are_strings_in_the_documented_form_only(
    policy: dict[str, Any], where: str, rule: str
):
    with pytest.raises(InvalidInputError) as raised:
        parse_policy(policy, "test.toml")
    assert any(p.startswith(f"{where}: ") and rule in p for p in raised.value.problems), (
        raised.value.problems
    )


def test_durations_up_to_the_bound_and_payload_spellings_are_read():
    assert parse_duration("3650d") == MAX_DURATION
    assert parse_duration(" 1h 30m ") == timedelta(minutes=90)
    policy = parse_policy(_policy(step={"delay": "3650d"}), "test.toml")
    # A flow's payload carries pydantic's ISO form; reading it back needs no policy file rules.
    again = type(policy).model_validate_json(policy.model_dump_json())
    assert again == policy
    assert '"PT1H"' in parse_policy(_policy(), "t").model_dump_json()


def test_a_huge_since_is_a_clear_error_not_an_overflow():
    with pytest.raises(ValueError, match="neither a duration"):
        parse_moment("99999999999d", datetime.now(UTC))
