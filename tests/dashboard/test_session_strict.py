"""The dashboard session cookie is read in the one spelling it was written in.

Fernet's decoder skips characters outside base64 and whatever follows the padding, so a cookie
with bytes appended used to be a session still, one that showed buyers' addresses. Properties over
the cookie value, then the same refusals over HTTP against a running service.
"""

import base64
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from temporalio.testing import WorkflowEnvironment

from api.dashboard.session import COOKIE, MAX_COOKIE_CHARS, SessionCookies
from domain.spelling import encode_base64url
from store.sql import SqlStore
from tests.dashboard.stack import DashboardStack, dashboard_stack
from tests.support import sample_checkout_data

FAST = settings(max_examples=200, deadline=None)
SESSIONS = SessionCookies("dashboard-session-property-secret", timedelta(hours=12))
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
api_keys = st.text(max_size=80) | st.from_regex(
    r"crk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", fullmatch=True
)


@FAST
@given(api_keys)
def test_a_session_cookie_round_trips(api_key: str):
    value = SESSIONS.seal(api_key)
    assert SESSIONS.unseal(value) == api_key
    assert len(value) <= MAX_COOKIE_CHARS and all(c in B64URL + "=" for c in value)


@st.composite
def tampered_cookies(draw: st.DrawFn) -> str:
    value = SESSIONS.seal(draw(api_keys))
    at = draw(st.integers(0, len(value) - 1))
    bare = value.rstrip("=")
    # Sealing is random (IV, time): every draw must not depend on the value's characters.
    letters = [i for i, c in enumerate(value) if c.isalpha()]
    flip = letters[draw(st.integers(0, 10_000)) % len(letters)]
    tampers = {
        "appended": value + draw(st.text(B64URL + "=!+/ .\x00", min_size=1) | st.text(min_size=1)),
        "prepended": draw(st.text(B64URL + "= ", min_size=1)) + value,
        "truncated": value[:at],
        "a character cut": value[:at] + value[at + 1 :],
        "padding dropped": bare,
        "padding added": value + "=",
        "padding moved": bare[:-1] + "=" + bare[-1] + value[len(bare) :],
        "space inside": value[:at] + draw(st.sampled_from([" ", "\t", "\n", "\x00"])) + value[at:],
        "standard alphabet": value.replace("-", "+").replace("_", "/") + "+/"[at % 2],
        "case changed": value[:flip] + value[flip].swapcase() + value[flip + 1 :],
        "a character changed": value[:at]
        + draw(st.sampled_from(B64URL.replace(value[at], "") + "é"))
        + value[at + 1 :],
        "non-ASCII inside": value[:at]
        + draw(st.sampled_from(["é", "\u0661", "\uff21"]))
        + value[at:],
        "padded twice": value + value,
    }
    tampered = tampers[draw(st.sampled_from(sorted(tampers)))]
    return tampered if tampered != value else value + "A"


@FAST
@given(tampered_cookies())
def test_a_tampered_session_cookie_is_no_session(tampered: str):
    assert SESSIONS.unseal(tampered) is None


@FAST
@given(st.text(max_size=300))
@example("")
@example("gAAAAAé")
@example("A" * (MAX_COOKIE_CHARS + 4))
def test_any_cookie_text_is_no_session_never_an_error(value: str):
    assert SESSIONS.unseal(value) is None


def test_a_cookie_sealed_with_another_secret_is_no_session():
    other = SessionCookies("another-dashboard-secret-entirely", timedelta(hours=12))
    assert SESSIONS.unseal(other.seal("crk_key")) is None


def test_the_stdlib_decoder_would_have_taken_the_appended_bytes():
    # Why the spelling is checked at all: what the cookie's own decoder forgives.
    value = SESSIONS.seal("crk_key")
    assert base64.urlsafe_b64decode(value + "AAAA!!") == base64.urlsafe_b64decode(value)
    assert encode_base64url(base64.urlsafe_b64decode(value), padded=True) == value


# --- over HTTP ---------------------------------------------------------------------------------


EMAIL = "ada.strict@example.com"


@pytest.fixture
async def production(
    dev_server_env: WorkflowEnvironment, store: SqlStore, tmp_path: Path
) -> AsyncIterator[DashboardStack]:
    async with dashboard_stack(dev_server_env.client, store, tmp_path, dev=False) as running:
        yield running


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_session_cookie_with_bytes_appended_is_sent_to_log_in(production: DashboardStack):
    async with httpx.AsyncClient(base_url=production.base_url) as http:
        reported = await http.post(
            "/ecom/v1/abandoned-checkout",
            json=sample_checkout_data(buyerInfo={"email": EMAIL, "visitorId": "visitor-ada"}),
            headers={"Authorization": f"Bearer {production.manage_key}"},
        )
        assert reported.status_code == 201, reported.text
        login = await http.post("/dashboard/login", data={"api_key": production.read_key})
        assert login.status_code == 303
    genuine = login.cookies[COOKIE].strip('"')

    async def listing(cookie: bytes) -> httpx.Response:
        # A raw Cookie header, as a client that edits cookies by hand would send it.
        async with httpx.AsyncClient(base_url=production.base_url) as http:
            return await http.get(
                "/dashboard/checkouts", headers={b"Cookie": b"%s=%s" % (COOKIE.encode(), cookie)}
            )

    seen = await listing(genuine.encode())
    assert seen.status_code == 200 and EMAIL in seen.text

    for tail in (b"A", b"AAAA", b"==", b"!!", b"%00", b"\xe9", b"gAAAAA" * 4):
        refused = await listing(genuine.encode() + tail)
        assert refused.status_code == 303, tail
        assert refused.headers["location"] == "/dashboard/login?next=/dashboard/checkouts"
        assert EMAIL not in refused.text
    # (Spaces around the value are the Cookie header's own, RFC 6265 drops them: not tested.)
    for spelled in (genuine.rstrip("=").encode(), genuine.encode() + b"=", b'"' + genuine.encode()):
        refused = await listing(spelled)
        assert refused.status_code == 303 and EMAIL not in refused.text, spelled

    # The cursor the page links to is a query parameter anyone can edit: a clear 400, never 500.
    deep = encode_base64url(b"[" * 3_000 + b"]" * 3_000)
    async with httpx.AsyncClient(base_url=production.base_url) as http:
        http.cookies.set(COOKIE, genuine, path="/dashboard")
        edited = await http.get("/dashboard/checkouts", params={"cursor": deep})
    assert edited.status_code == 400
    assert "invalid cursor: not one this service gave" in edited.text
