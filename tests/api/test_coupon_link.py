"""The recovery link applies the step's coupon: the redirect hands the code to the checkout in the
form the shop configured (a query parameter, or a URL template of its own), while the code can
still be redeemed.

Against the real service on both databases: a worker sends the coupon email over SMTP, the buyer's
link is followed on the served API (query parameter) and on the same app built with the other
settings (template, none).
"""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from cli.main import app
from domain.coupon_link import CouponLink, CouponLinkError, coupon_link
from domain.policy import parse_policy
from store.coupons import StoreCouponProvider
from store.schema import coupons, link_clicks
from store.sql import SqlStore
from tests.api.stack import BASE, Stack, checkout_body, running_stack
from tests.support import SmtpServer, body_text, eventually
from workers.api_server import build_app

CHECKOUT_URL = "https://shop.example/checkout?id=42&discount=OLD&lang=de#pay"
SHOPIFY_STYLE = "https://shop.example/discount/{code}?redirect={path}"

COUPON_POLICY = parse_policy(
    {
        "name": "coupon-link-test",
        "listen_window": "1h",
        "frequency_cap": {"window": "0s"},
        "steps": [
            {
                "delay": "1s",
                "action": "email",
                "template": "reminder",
                "coupon": {"percent_off": 10, "valid_for": "2d"},
            },
            {"delay": "1h", "action": "email", "template": "last_chance"},
        ],
    },
    "test",
)


@pytest.fixture
async def stack(
    dev_server_env: WorkflowEnvironment, store: SqlStore, smtp: SmtpServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    async with running_stack(
        dev_server_env.client,
        store,
        smtp,
        tmp_path,
        policy=COUPON_POLICY,
        coupon_link_param="discount",
    ) as running:
        yield running


@asynccontextmanager
async def _app_with(stack: Stack, **settings: str | None) -> AsyncIterator[httpx.AsyncClient]:
    """The API app of `stack` built with other settings, served in-process."""
    changed = stack.settings.model_copy(update=settings)
    app = build_app(changed, stack.service, stack.store, stack.policy)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


async def _emailed_link_and_code(stack: Stack, smtp: SmtpServer) -> tuple[str, str]:
    """The recovery link and the coupon code of the first email, as the buyer reads them."""
    message = await eventually(
        lambda: _first(smtp.handler.messages), what="the coupon email", timeout=60
    )
    text = body_text(message, "plain")
    (link,) = set(re.findall(r"https?://\S+redirect-to-checkout\?token=[\w.-]+", text))
    code = re.search(r"Use code (\S+) for", text)
    assert code, text
    return link.removeprefix(stack.settings.public_url), code.group(1)


async def _first(messages: list[Any]) -> Any:
    return messages[0] if messages else None


async def test_the_link_carries_the_steps_code_in_the_shops_form(stack: Stack, smtp: SmtpServer):
    created = await stack.report(checkout_body(checkoutUrl=CHECKOUT_URL))
    assert created.status_code == 201, created.text
    checkout_id = created.json()["abandonedCheckout"]["id"]
    link, code = await _emailed_link_and_code(stack, smtp)
    assert await StoreCouponProvider(stack.store.engine).codes_for(checkout_id) == [code]

    by_parameter = await stack.http.get(link)
    assert by_parameter.status_code == 302
    # The other query parameters and the fragment stay; the old code gives way to this one.
    assert by_parameter.headers["location"] == (
        f"https://shop.example/checkout?id=42&lang=de&discount={code}#pay"
    )

    async with _app_with(
        stack, coupon_link_param=None, coupon_link_template=SHOPIFY_STYLE
    ) as templated:
        by_template = await templated.get(link)
    assert by_template.headers["location"] == (
        f"https://shop.example/discount/{code}"
        "?redirect=/checkout%3Fid%3D42%26discount%3DOLD%26lang%3Dde%23pay"
    )

    async with _app_with(stack, coupon_link_param=None) as unset:
        plain = await unset.get(link)
    assert plain.headers["location"] == CHECKOUT_URL

    # Each follow was a click of step 1, as without coupons.
    async with stack.store.engine.connect() as conn:
        clicks = (await conn.execute(select(link_clicks.c.step))).scalars().all()
    assert clicks == [1, 1, 1]


async def test_a_used_or_expired_code_is_left_off(stack: Stack, smtp: SmtpServer):
    created = await stack.report(checkout_body(checkoutUrl="https://shop.example/c/1"))
    assert created.status_code == 201, created.text
    link, code = await _emailed_link_and_code(stack, smtp)
    assert (await stack.http.get(link)).headers["location"] == (
        f"https://shop.example/c/1?discount={code}"
    )

    redeemed = await stack.http.post(f"{BASE}/coupons/{code}/redeem", headers=stack.as_manager())
    assert redeemed.status_code == 200, redeemed.text
    assert (await stack.http.get(link)).headers["location"] == "https://shop.example/c/1"

    async with stack.store.engine.begin() as conn:
        await conn.execute(
            update(coupons)
            .where(coupons.c.code == code)
            .values(redeemed_date=None, expires_date=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await stack.http.get(link)).headers["location"] == "https://shop.example/c/1"

    # The coupon routes stay, for shops that look codes up themselves.
    looked_up = await stack.http.get(f"{BASE}/coupons/{code}", headers=stack.as_reader())
    assert looked_up.status_code == 200


def test_the_parameter_form_encodes_and_keeps_the_rest() -> None:
    rule = CouponLink(parameter="discount")
    assert rule.apply("https://s.example/c", "A B&C") == "https://s.example/c?discount=A%20B%26C"
    assert rule.apply("https://s.example/c?", "X") == "https://s.example/c?discount=X"
    # Kept as written: `+` and `%2F` in the shop's own query are not re-encoded.
    assert rule.apply("https://s.example/c?q=a+b%2F&discount=1#f", "X") == (
        "https://s.example/c?q=a+b%2F&discount=X#f"
    )


def test_the_template_form_fills_each_placeholder() -> None:
    rule = coupon_link(None, "https://s.example/apply?code={code}&next={url}&path={path}")
    assert rule is not None
    assert rule.apply("https://s.example/c/1?k=v", "X/1") == (
        "https://s.example/apply?code=X%2F1&next=https%3A%2F%2Fs.example%2Fc%2F1%3Fk%3Dv"
        "&path=/c/1%3Fk%3Dv"
    )


@pytest.mark.parametrize(
    ("parameter", "template", "problem"),
    [
        ("discount", SHOPIFY_STYLE, "not both"),
        ("dis count", None, "letters, digits"),
        (None, "https://s.example/discount?redirect={path}", "must hold {code}"),
        (None, "https://s.example/{code}/{checkout}", "unknown placeholder {checkout}"),
        (None, "https://s.example/{code!r}", "unknown placeholder {code}"),
        (None, "https://s.example/{code", "coupon link template"),
        (None, "/discount/{code}", "absolute http(s) URL"),
        (None, "javascript:alert({code})", "absolute http(s) URL"),
    ],
)
def test_a_form_that_cannot_make_urls_is_refused(
    parameter: str | None, template: str | None, problem: str
) -> None:
    with pytest.raises(CouponLinkError, match=re.escape(problem)):
        coupon_link(parameter, template)


def test_neither_setting_means_no_rule() -> None:
    assert coupon_link(None, None) is None
    assert coupon_link("", "") is None


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        (
            "TEMPLATE",
            "https://s.example/{cod}",
            "coupon link template 'https://s.example/{cod}': unknown placeholder {cod} "
            "(it may use {code}, {url}, {path})",
        ),
        (
            "PARAM",
            "dis count",
            "coupon link parameter 'dis count': letters, digits, '.', '_', '~' and '-' only",
        ),
    ],
)
def test_a_process_refuses_to_start_with_a_form_that_cannot_make_urls(
    variable: str, value: str, problem: str
) -> None:
    name = f"CHECKOUT_RECOVERY_COUPON_LINK_{variable}"
    result = CliRunner().invoke(app, ["api"], env={name: value})
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == f"error: invalid settings: {name}: {problem}"
