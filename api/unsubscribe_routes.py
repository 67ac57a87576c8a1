"""Unsubscribing from recovery email: RFC 8058 one-click, and a page for the visible link.

No API key: the signed token from the email is the proof. A GET only shows a confirmation form,
because mail scanners follow links; the unsubscribe itself is a POST, which is what one-click
mail clients send (body `List-Unsubscribe=One-Click`) and what the form sends.
"""

import contextlib
from datetime import UTC, datetime
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from domain.links import UNSUBSCRIBE_PATH, LinkSigner
from service.checkouts import CheckoutNotFoundError, CheckoutService

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title></head>
<body style="font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">
<h1 style="font-size:1.4rem">{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(title), body=body), status_code=status)


def unsubscribe_router(service: CheckoutService, links: LinkSigner) -> APIRouter:
    invalid: dict[int | str, dict[str, Any]] = {
        400: {"description": "The token is missing, malformed or not ours"}
    }
    router = APIRouter(tags=["unsubscribe"], responses=invalid)
    token_query = Query(max_length=300, description="The token from the email's link")

    @router.get(UNSUBSCRIBE_PATH, response_class=HTMLResponse, summary="Unsubscribe page")
    async def confirm(token: Annotated[str, token_query] = "") -> HTMLResponse:
        """A form that confirms the unsubscribe; the GET itself changes nothing."""
        if links.verify_unsubscribe(token) is None:
            return _invalid()
        form = (
            "<p>Stop receiving reminder emails about carts you left?</p>"
            f'<form method="post" action="{UNSUBSCRIBE_PATH}?token={escape(token)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>'
        )
        return _page("Unsubscribe from cart reminders", form)

    @router.post(UNSUBSCRIBE_PATH, response_class=HTMLResponse, summary="Unsubscribe (RFC 8058)")
    async def unsubscribe(token: Annotated[str, token_query] = "") -> HTMLResponse:
        """Suppresses the address for every checkout and stops the emails of running flows.
        Repeating it is harmless."""
        checkout_id = links.verify_unsubscribe(token)
        if checkout_id is None:
            return _invalid()
        # An erased checkout has no address left to suppress and no flow that could mail it.
        with contextlib.suppress(CheckoutNotFoundError):
            await service.unsubscribe(checkout_id, datetime.now(UTC))
        return _page(
            "You are unsubscribed",
            "<p>You will get no more reminder emails about carts you left.</p>",
        )

    return router


def _invalid() -> HTMLResponse:
    return _page(
        "This link is not valid", "<p>Please use the link from the email as it is.</p>", 400
    )
