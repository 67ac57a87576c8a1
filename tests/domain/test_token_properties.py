"""Every token the engine hands out is read back in the one spelling it was written in.

Properties over the recovery-link token, the unsubscribe token and the query cursor (the
dashboard session cookie has its own file under tests/dashboard/): a genuine value round-trips,
and a tampered one (bytes appended or cut, other padding or alphabet, whitespace, digits of
another script, signs and underscores in numbers, leading zeros, case changes, changed
characters) is refused exactly as a forged one is, never with an exception.
"""

import json
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from domain.checkout import CheckoutStatus
from domain.errors import InvalidInputError
from domain.links import LinkCheck, LinkSigner
from domain.query import (
    FIELDS,
    MAX_CURSOR_CHARS,
    SORTABLE,
    Boundary,
    CheckoutQuery,
    Direction,
    Kind,
    Scalar,
    make_cursor,
    parse_query,
)
from domain.spelling import ascii_number, decode_base64url, encode_base64url

FAST = settings(max_examples=200, deadline=None)

SIGNER = LinkSigner("property-test-link-secret", "https://recovery.shop.test", timedelta(days=7))
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ZEROS = (0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0xFF10, 0x1D7CE, 0x1D7D8, 0x1E950)
"""The zero of ten-digit runs of other scripts: Arabic-Indic, Persian, Devanagari, Bengali,
Thai, fullwidth, two mathematical alphabets, Adlam. int() reads every one of them."""
NOT_QUITE_NUMBERS = ("+", "-", "_", " ", "\t", "\n", "\u00a0", "\u2007", "\u00b2", "0")
"""What int() forgives around or inside digits (and a superscript it does not)."""

ids = st.text(min_size=1, max_size=40)
steps = st.integers(min_value=0, max_value=99)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


def test_the_other_scripts_digits_are_digits_to_int():
    for zero in ZEROS:
        spelled = "".join(chr(zero + d) for d in range(10))
        assert [unicodedata.decimal(c) for c in spelled] == list(range(10))
        assert int(spelled[1:]) == 123456789  # what made such tokens pass before


# --- tampering ---------------------------------------------------------------------------------


Tamper = Callable[[st.DrawFn, str], str]


def _position(draw: st.DrawFn, text: str, *, end: bool = False) -> int:
    return draw(st.integers(min_value=0, max_value=len(text) if end else len(text) - 1))


def _appended(draw: st.DrawFn, text: str) -> str:
    tail = draw(st.text(alphabet=B64URL + "=+/ .\t\n\x00", min_size=1) | st.text(min_size=1))
    return text + tail


def _prepended(draw: st.DrawFn, text: str) -> str:
    return draw(st.text(alphabet=B64URL + "=+/ .", min_size=1) | st.text(min_size=1)) + text


def _truncated(draw: st.DrawFn, text: str) -> str:
    return text[: _position(draw, text)]


def _cut(draw: st.DrawFn, text: str) -> str:
    at = _position(draw, text)
    return text[:at] + text[at + 1 :]


def _padded(draw: st.DrawFn, text: str) -> str:
    """Padding added, removed or moved: another spelling of (nearly) the same bytes."""
    bare = text.rstrip("=")
    choices = [bare + "=" * n for n in range(4) if bare + "=" * n != text]
    choices += [text + "%3D", text[:-1] + "=" + text[-1]]
    return draw(st.sampled_from(choices))


def _spaced(draw: st.DrawFn, text: str) -> str:
    at = _position(draw, text, end=True)
    return (
        text[:at] + draw(st.sampled_from([" ", "\t", "\n", "\r\n", "\u00a0", "\x00"])) + text[at:]
    )


def _other_alphabet(draw: st.DrawFn, text: str) -> str:
    """Standard base64's `+` and `/` for base64url's `-` and `_` (or put in, when none is)."""
    swapped = text.replace("-", "+").replace("_", "/")
    if swapped != text:
        return swapped
    at = _position(draw, text, end=True)
    return text[:at] + draw(st.sampled_from("+/")) + text[at:]


def _recased(draw: st.DrawFn, text: str) -> str:
    letters = [i for i, c in enumerate(text) if c.swapcase() != c]
    if not letters:
        return text + "a"
    at = draw(st.sampled_from(letters))
    return text[:at] + text[at].swapcase() + text[at + 1 :]


def _changed(draw: st.DrawFn, text: str) -> str:
    at = _position(draw, text)
    other = draw(st.sampled_from(B64URL.replace(text[at], "") + "é.="))
    return text[:at] + other + text[at + 1 :]


def _non_ascii(draw: st.DrawFn, text: str) -> str:
    at = _position(draw, text, end=True)
    return text[:at] + draw(st.sampled_from(["é", "\u0661", "\uff21", "\U0001d7ce"])) + text[at:]


ENCODING_TAMPERS: list[Tamper] = [
    _appended,
    _prepended,
    _truncated,
    _cut,
    _padded,
    _spaced,
    _other_alphabet,
    _non_ascii,
]
"""Tampers that change how a value is spelled rather than (only) what it says."""
CONTENT_TAMPERS: list[Tamper] = [_recased, _changed]
TAMPERS = ENCODING_TAMPERS + CONTENT_TAMPERS


def _tampered(draw: st.DrawFn, text: str, tampers: list[Tamper] = TAMPERS) -> str:
    changed = draw(st.sampled_from(tampers))(draw, text)
    return changed if changed != text else text + "A"


def _other_digits(draw: st.DrawFn, number: str) -> str:
    """The same number with some of its digits written in another script."""
    zero = draw(st.sampled_from(ZEROS))
    chosen = draw(st.sets(st.integers(0, len(number) - 1), min_size=1))
    return "".join(chr(zero + int(c)) if i in chosen else c for i, c in enumerate(number))


def _loosened(draw: st.DrawFn, number: str) -> str:
    """The same number with a sign, underscore, space or leading zero that int() forgives."""
    extra = draw(st.sampled_from(NOT_QUITE_NUMBERS))
    if extra == "_" and len(number) > 1:
        at = draw(st.integers(1, len(number) - 1))
        return number[:at] + "_" + number[at:]
    return draw(st.sampled_from([extra + number, number + extra]))


def _changed_digit(draw: st.DrawFn, number: str) -> str:
    at = _position(draw, number)
    other = draw(st.sampled_from("0123456789".replace(number[at], "")))
    return number[:at] + other + number[at + 1 :]


# --- the two parse helpers ---------------------------------------------------------------------


@FAST
@given(st.integers(min_value=0, max_value=10**18 - 1))
def test_a_number_reads_back_as_written(number: int):
    assert ascii_number(str(number)) == number


@FAST
@given(st.text(max_size=24))
@example("\u0663")
@example("+1")
@example("1_0")
@example(" 1")
@example("01")
@example("²")
@example("\uff11")
def test_only_what_str_writes_is_a_number(text: str):
    number = ascii_number(text)
    assert number is None or str(number) == text


def test_a_number_has_a_bounded_length():
    assert ascii_number("9" * 18) == 10**18 - 1
    assert ascii_number("9" * 19) is None
    assert ascii_number("") is None


@FAST
@given(st.binary(max_size=80), st.booleans())
def test_bytes_read_back_as_encoded(raw: bytes, padded: bool):
    text = encode_base64url(raw, padded=padded)
    assert decode_base64url(text, padded=padded) == raw
    assert ("=" in text) <= padded


@FAST
@given(st.text(alphabet=B64URL + "=+/ \n.é", max_size=40) | st.text(max_size=40), st.booleans())
@example("QQ", False)
@example("QR", False)  # unused bits set: another spelling of "A"
@example("QQ==", False)
@example("QQ", True)
@example("QQ=", True)
@example("QQ==QQ==", True)  # data after the padding
@example("Q Q==", True)
@example("+/8=", True)
def test_only_what_the_encoder_writes_is_base64(text: str, padded: bool):
    raw = decode_base64url(text, padded=padded)
    assert raw is None or encode_base64url(raw, padded=padded) == text


def test_base64_has_a_bounded_length():
    assert decode_base64url("A" * 8, max_chars=8) is not None
    assert decode_base64url("A" * 12, max_chars=8) is None


# --- recovery links ----------------------------------------------------------------------------


@FAST
@given(ids, steps, moments)
def test_a_link_token_round_trips(checkout_id: str, step: int, issued_at: datetime):
    token = SIGNER.token(checkout_id, step, issued_at)
    verdict = SIGNER.verify(checkout_id, token, now=issued_at)
    assert (verdict.check, verdict.step) == (LinkCheck.GOOD, step)
    later = SIGNER.verify(checkout_id, token, now=issued_at + timedelta(days=8))
    assert later.check is LinkCheck.EXPIRED
    assert token.isascii() and all(c in B64URL + "." for c in token)


@st.composite
def tampered_link_tokens(draw: st.DrawFn) -> tuple[str, str, datetime]:
    checkout_id, issued_at = draw(ids), draw(moments)
    token = SIGNER.token(checkout_id, draw(steps), issued_at)
    step, expires, signature = token.split(".")
    numbers = [_other_digits, _loosened, _changed_digit]
    how = draw(st.sampled_from(["whole", "signature", "step", "expires"]))
    if how == "whole":
        tampered = _tampered(draw, token)
    elif how == "signature":
        tampered = f"{step}.{expires}.{_tampered(draw, signature)}"
    elif how == "step":
        tampered = f"{draw(st.sampled_from(numbers))(draw, step)}.{expires}.{signature}"
    else:
        tampered = f"{step}.{draw(st.sampled_from(numbers))(draw, expires)}.{signature}"
    return checkout_id, tampered, issued_at


@FAST
@given(tampered_link_tokens())
def test_a_tampered_link_token_is_forged(case: tuple[str, str, datetime]):
    checkout_id, tampered, issued_at = case
    assert SIGNER.verify(checkout_id, tampered, now=issued_at).check is LinkCheck.FORGED


@pytest.mark.parametrize("zero", ZEROS)
def test_an_expiry_in_another_scripts_digits_is_forged(zero: int):
    # The issue's find: such a token kept its signature, because int() read the same number.
    issued_at = datetime(2026, 11, 22, 12, tzinfo=UTC)
    step, expires, signature = SIGNER.token("c-1", 1, issued_at).split(".")
    other = "".join(chr(zero + int(c)) for c in expires)
    for token in (f"{step}.{other}.{signature}", f"0{step}.{expires}.{signature}"):
        assert SIGNER.verify("c-1", token, now=issued_at).check is LinkCheck.FORGED


@FAST
@given(ids, ids, steps, moments)
def test_a_link_token_belongs_to_its_checkout(one: str, other: str, step: int, at: datetime):
    token = SIGNER.token(one, step, at)
    expected = LinkCheck.GOOD if one == other else LinkCheck.FORGED
    assert SIGNER.verify(other, token, now=at).check is expected


@FAST
@given(ids, st.text(max_size=120))
@example("c-1", "1.2.é")  # compare_digest refuses non-ASCII text with an exception
@example("c-\ud800", "1.2.AAAA")  # a lone surrogate in the id
@example("c-1", "1.2." + "A" * 43)
def test_any_text_is_a_verdict_never_an_error(checkout_id: str, token: str):
    assert SIGNER.verify(checkout_id, token).check is LinkCheck.FORGED


# --- unsubscribe links -------------------------------------------------------------------------


@FAST
@given(ids)
@example("a.b")
@example("a&b=c#d+e f%20")
def test_an_unsubscribe_token_round_trips_through_its_url(checkout_id: str):
    token = SIGNER.unsubscribe_token(checkout_id)
    assert SIGNER.verify_unsubscribe(token) == checkout_id
    # The URL carries the token as it was signed, whatever the checkout id holds.
    query = parse_qs(urlsplit(SIGNER.unsubscribe_url(checkout_id)).query)
    assert query == {"token": [token]}


@st.composite
def tampered_unsubscribe_tokens(draw: st.DrawFn) -> str:
    token = SIGNER.unsubscribe_token(draw(ids))
    checkout_id, _, signature = token.rpartition(".")
    if draw(st.booleans()):
        return _tampered(draw, token)
    return f"{checkout_id}.{_tampered(draw, signature)}"


@FAST
@given(tampered_unsubscribe_tokens())
def test_a_tampered_unsubscribe_token_is_not_ours(tampered: str):
    assert SIGNER.verify_unsubscribe(tampered) is None


@FAST
@given(st.text(max_size=120))
@example("c-1.é")
@example(".AAAA")
@example("c-\ud800.AAAA")
def test_any_text_is_an_unsubscribe_verdict_never_an_error(token: str):
    assert SIGNER.verify_unsubscribe(token) is None


def test_a_link_signature_is_no_unsubscribe_signature():
    token = SIGNER.token("c-1", 1, datetime(2026, 11, 22, tzinfo=UTC))
    assert SIGNER.verify_unsubscribe(token) is None
    assert SIGNER.verify_unsubscribe("c-1.1." + token.rpartition(".")[2]) is None


# --- cursors -----------------------------------------------------------------------------------


CURSOR_PATH = "query.cursorPaging.cursor"
REFUSED = f"{CURSOR_PATH}: invalid cursor: not one this service gave"
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5.5))])
plain_text = st.text(st.characters(categories=["L", "N", "P", "S"]), max_size=12)
"""Filter values any version of the request checks accepts: no control characters."""
dates = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=ZONES
)
statuses = st.sampled_from([s.value for s in CheckoutStatus])

conditions = st.one_of(
    st.builds(lambda s: {"status": s}, statuses),
    st.builds(lambda v: {"id": {"$in": v}}, st.lists(plain_text, min_size=1, max_size=4)),
    st.builds(lambda d: {"createdDate": {"$gte": d.isoformat()}}, dates),
    st.builds(lambda t: {"buyerInfo.email": {"$startsWith": t}}, plain_text),
    st.builds(lambda b: {"checkoutRecoveredDate": {"$exists": b}}, st.booleans()),
)


def _combined(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Filters joined by $or and $and, or negated by $not."""
    branches = st.lists(inner, min_size=1, max_size=3)
    return st.one_of(
        st.builds(lambda parts: {"$or": parts}, branches),
        st.builds(lambda parts: {"$and": parts}, branches),
        st.builds(lambda part: {"$not": part}, inner.filter(bool)),
    )


filters: st.SearchStrategy[dict[str, Any]] = st.recursive(
    st.just({}) | conditions, _combined, max_leaves=6
)


def _boundary_value(kind: Kind) -> st.SearchStrategy[Scalar]:
    """A row's sort value as the store gives it: for a text field any text a report may hold
    (no control characters or lone surrogates: those are refused at every edge)."""
    if kind is Kind.DATE:
        return dates
    if kind is Kind.STATUS:
        return statuses
    return st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=30)


@st.composite
def pages(draw: st.DrawFn) -> tuple[CheckoutQuery, tuple[Scalar, ...], Direction]:
    """A first page's query, a boundary row's sort values and a direction."""
    names = draw(st.lists(st.sampled_from(SORTABLE), unique=True, max_size=3))
    sort = [{"fieldName": n, "order": draw(st.sampled_from(["ASC", "DESC"]))} for n in names]
    body = {"filter": draw(filters), "sort": sort, "cursorPaging": {"limit": 10}}
    query = parse_query({"query": body})
    values = tuple(draw(_boundary_value(FIELDS[k.field].kind)) for k in query.sort)
    return query, values, draw(st.sampled_from(list(Direction)))


def _continue(cursor: str) -> CheckoutQuery:
    return parse_query({"query": {"cursorPaging": {"limit": 7, "cursor": cursor}}})


def _refusal(cursor: str) -> list[str]:
    with pytest.raises(InvalidInputError) as caught:
        _continue(cursor)
    return caught.value.problems


@FAST
@given(pages())
def test_a_cursor_round_trips(page: tuple[CheckoutQuery, tuple[Scalar, ...], Direction]):
    query, values, direction = page
    cursor = make_cursor(query, values, direction)
    continued = _continue(cursor)
    assert continued.boundary == Boundary(values, direction)
    assert (continued.filter, continued.sort) == (query.filter, query.sort)
    assert continued.raw_filter == query.raw_filter
    assert (continued.limit, continued.cursor_paging) == (7, True)
    assert make_cursor(continued, values, direction) == cursor  # one spelling, kept
    assert all(c in B64URL for c in cursor)


@st.composite
def respelled_cursors(draw: st.DrawFn) -> str:
    query, values, direction = draw(pages())
    return _tampered(draw, make_cursor(query, values, direction), ENCODING_TAMPERS)


@FAST
@given(respelled_cursors())
def test_a_cursor_spelled_otherwise_is_refused(tampered: str):
    assert _refusal(tampered) == [REFUSED]


@st.composite
def edited_cursors(draw: st.DrawFn) -> str:
    query, values, direction = draw(pages())
    return _tampered(draw, make_cursor(query, values, direction), CONTENT_TAMPERS)


@FAST
@given(edited_cursors())
def test_an_edited_cursor_is_refused_or_is_the_query_it_spells(tampered: str):
    """Cursors are not signed (they ask nothing a filter could not, see domain.query): a
    character changed may spell another well-formed cursor, which pages as written; anything
    else is the one refusal, never another error."""
    try:
        continued = _continue(tampered)
    except InvalidInputError as err:
        assert err.problems == [REFUSED]
        return
    payload = json.loads(decode_base64url(tampered) or b"")
    assert continued.filter == parse_query({"query": {"filter": payload["f"]}}).filter
    assert continued.boundary is not None
    assert len(continued.boundary.values) == len(continued.sort)


def _cursor_of(text: str) -> str:
    return encode_base64url(text.encode())


GOOD_PAYLOAD = '{"f":{},"s":[],"v":["2026-11-22T12:00:00Z","a"],"d":"next"}'


def _nested(depth: int, inner: str = "{}") -> str:
    return '{"$not":' * depth + inner + "}" * depth


HOSTILE_PAYLOADS: dict[str, str | bytes] = {
    "nested 50 000 deep": "[" * 50_000 + "]" * 50_000,
    "filter nested 5 000 deep": GOOD_PAYLOAD.replace('"f":{}', '"f":' + _nested(5_000)),
    "filter nested 11 deep": GOOD_PAYLOAD.replace(
        '"f":{}', '"f":' + _nested(11, '{"status":"ABANDONED"}')
    ),
    "a value nested 600 deep": GOOD_PAYLOAD.replace('"a"', "[" * 600 + '"a"' + "]" * 600),
    "an operand nested 600 deep": GOOD_PAYLOAD.replace(
        '"f":{}', '"f":{"id":{"$in":' + "[" * 600 + '"a"' + "]" * 600 + "}}"
    ),
    "a number of 5 000 digits": GOOD_PAYLOAD.replace('"a"', "1" * 5_000),
    "not an object": '["f","s","v","d"]',
    "null": "null",
    "empty": "",
    "not JSON": "{f: {}}",
    "an extra key": GOOD_PAYLOAD.replace('"d":"next"', '"d":"next","x":1'),
    "a key missing": GOOD_PAYLOAD.replace(',"d":"next"', ""),
    "keys in another order": '{"s":[],"f":{},"v":["2026-11-22T12:00:00Z","a"],"d":"next"}',
    "a key twice": GOOD_PAYLOAD.replace('"d":"next"', '"d":"prev","d":"next"'),
    "spaces": GOOD_PAYLOAD.replace(",", ", "),
    "trailing space": GOOD_PAYLOAD + " ",
    "an escaped key": GOOD_PAYLOAD.replace('"f"', '"\\u0066"'),
    "raw non-ASCII": GOOD_PAYLOAD.replace('"a"', '"é"'),
    "not UTF-8": GOOD_PAYLOAD.encode().replace(b'"a"', b'"\xff"'),
    "UTF-16": GOOD_PAYLOAD.encode("utf-16"),
    "filter a list": GOOD_PAYLOAD.replace('"f":{}', '"f":[]'),
    "filter a string": GOOD_PAYLOAD.replace('"f":{}', '"f":"status"'),
    "filter null": GOOD_PAYLOAD.replace('"f":{}', '"f":null'),
    "an unknown field": GOOD_PAYLOAD.replace('"f":{}', '"f":{"phone":"1"}'),
    "sort an object": GOOD_PAYLOAD.replace('"s":[]', '"s":{}'),
    "sort of strings": GOOD_PAYLOAD.replace('"s":[]', '"s":["id"]'),
    "sort of an unknown field": GOOD_PAYLOAD.replace('"s":[]', '"s":[{"fieldName":"phone"}]'),
    "sort of a list field name": GOOD_PAYLOAD.replace('"s":[]', '"s":[{"fieldName":["id"]}]'),
    "values an object": GOOD_PAYLOAD.replace('["2026-11-22T12:00:00Z","a"]', '{"a":1}'),
    "too few values": GOOD_PAYLOAD.replace('"2026-11-22T12:00:00Z",', ""),
    "too many values": GOOD_PAYLOAD.replace('"a"]', '"a","b"]'),
    "a value a number": GOOD_PAYLOAD.replace('"a"', "1"),
    "a value null": GOOD_PAYLOAD.replace('"a"', "null"),
    "a date without a zone": GOOD_PAYLOAD.replace("12:00:00Z", "12:00:00"),
    "a date that is none": GOOD_PAYLOAD.replace("2026-11-22T12:00:00Z", "yesterday"),
    "a status that is none": '{"f":{},"s":[{"fieldName":"status","order":"ASC"}],'
    '"v":["LOST","a"],"d":"next"}',
    "direction in capitals": GOOD_PAYLOAD.replace('"next"', '"NEXT"'),
    "direction unknown": GOOD_PAYLOAD.replace('"next"', '"sideways"'),
    "direction a number": GOOD_PAYLOAD.replace('"next"', "1"),
    "direction a list": GOOD_PAYLOAD.replace('"next"', '["next"]'),
}


def test_the_hostile_payloads_start_from_a_good_one():
    assert _continue(_cursor_of(GOOD_PAYLOAD)).boundary is not None


@pytest.mark.parametrize("name", HOSTILE_PAYLOADS)
def test_a_cursor_not_of_the_engines_shape_is_the_one_refusal(name: str):
    payload = HOSTILE_PAYLOADS[name]
    raw = payload if isinstance(payload, bytes) else payload.encode()
    assert _refusal(encode_base64url(raw)) == [REFUSED]


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor_of(GOOD_PAYLOAD) + "==",
        encode_base64url(GOOD_PAYLOAD.encode(), padded=True),
        " " + _cursor_of(GOOD_PAYLOAD),
        "A" * (MAX_CURSOR_CHARS + 4),
        "garbage!",
        "",
    ],
    ids=["padding added", "padded", "leading space", "over-long", "not base64", "empty"],
)
def test_a_cursor_not_in_the_engines_spelling_is_the_one_refusal(cursor: str):
    assert _refusal(cursor) == [REFUSED]


def test_a_refused_cursor_is_a_400_problem_on_the_cursor_field():
    # What api.errors.invalid_input makes of it: field and message apart.
    [problem] = _refusal(_cursor_of("[" * 5_000 + "]" * 5_000))
    field, _, message = problem.partition(": ")
    assert (field, message) == (CURSOR_PATH, "invalid cursor: not one this service gave")
