"""Logging in and out, and the check every other page makes: a live read key in the session."""

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.auth import Authenticator
from api.dashboard.session import SessionCookies
from api.dashboard.views import page
from domain.access import ApiKey, Scope

PREFIX = "/dashboard"
_STYLESHEET = (Path(__file__).parent / "static" / "dashboard.css").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


class Gate:
    def __init__(self, auth: Authenticator, secret: str, session_hours: int) -> None:
        self._auth = auth
        self.sessions = SessionCookies(secret, timedelta(hours=session_hours))

    async def operator(self, request: Request) -> ApiKey:
        """A FastAPI dependency: the key of a logged-in operator; anyone else is sent to log in.

        The key is checked again on every page, so revoking it (or its read scope) ends the
        session within the Authenticator's cache time."""
        key = await self.check(self.sessions.api_key(request) or "")
        if isinstance(key, Refusal):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(303, headers={"Location": f"{PREFIX}/login?next={quote(target)}"})
        return key

    async def check(self, token: str) -> ApiKey | Refusal:
        """The key behind a token when it may read; else why not."""
        key = await self._auth.authenticate(token) if token else None
        if key is None:
            return Refusal(401, "That API key is not valid: unknown, revoked or mistyped.")
        if not key.allows(Scope.READ):
            return Refusal(403, f"The key {key.id} lacks the read scope ({Scope.READ.value}).")
        return key


def login_router(gate: Gate) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/style.css")
    async def stylesheet() -> Response:
        return Response(_STYLESHEET, media_type="text/css")

    @router.get("/login")
    async def login_form(next: str = PREFIX) -> HTMLResponse:
        return page("login.html", next=_local(next), error=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        # A urlencoded form, read by hand: two fields do not justify a multipart parser.
        form = parse_qs((await request.body()).decode(errors="replace"))
        token = form.get("api_key", [""])[0].strip()
        target = _local(form.get("next", [PREFIX])[0])
        key = await gate.check(token)
        if isinstance(key, Refusal):
            return page("login.html", key.status, next=target, error=key.message)
        response = RedirectResponse(target, status_code=303)
        gate.sessions.start(response, request, token)
        return response

    @router.post("/logout")
    async def logout() -> Response:
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        gate.sessions.end(response)
        return response

    return router


def _local(target: str) -> str:
    """Where to go after login: a dashboard page of ours, never another site."""
    if target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX
