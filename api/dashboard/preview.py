"""The preview page: any email step of the engine's policy, for a stored checkout or the sample, in
a chosen language, shown as a sent email is; and, for a manage key, "send me a test".

The test send is a POST that passes the same checks as every action (api.dashboard.csrf: the
session's token and this dashboard's origin) and is refused (403) to a read-scope session. It
goes to the address the operator typed, never the buyer's, and is recorded nowhere (see
activities.email_preview).
"""

import logging
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth import resolve_shop
from api.dashboard.actions import ShowPage
from api.dashboard.config import EmailPreviews
from api.dashboard.csrf import FIELD, SAME_ORIGIN_REFERRER, CsrfTokens
from api.dashboard.login import PREFIX, Gate
from api.dashboard.views import MAILBOX, STRICT
from domain.access import ApiKey, Scope
from domain.errors import InvalidInputError
from domain.sent_email import SentEmail

logger = logging.getLogger(__name__)

PREVIEW = f"{PREFIX}/preview"
MAX_STEP = 1000
SENT = "test-sent"
"""`?outcome=test-sent`: the page a test send leads back to says it went."""


def preview_url(step: int | None, language: str, checkout_id: str, outcome: str = "") -> str:
    query = {"step": step or "", "language": language, "checkout": checkout_id}
    if outcome:
        query["outcome"] = outcome
    return f"{PREVIEW}?{urlencode({k: v for k, v in query.items() if v != ''})}"


def preview_router(gate: Gate, secret: str, previews: EmailPreviews, show: ShowPage) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    tokens = CsrfTokens(secret)
    Operator = Annotated[ApiKey, Depends(gate.operator)]  # noqa: N806 (a type, named as one)

    async def render(
        request: Request,
        key: ApiKey,
        step: int | None,
        language: str,
        checkout_id: str,
        *,
        status: int = 200,
        test_to: str = "",
        test_error: str | None = None,
    ) -> HTMLResponse:
        steps = list(await previews.steps(shop_id=resolve_shop(key, None)))
        # The first email step unless one was asked for; a number that names none is the
        # previewer's to refuse, with the reason.
        number = step or (steps[0].number if steps else None)
        chosen = next((s for s in steps if s.number == number), None)
        mail: SentEmail | None = None
        problems: list[str] = []
        if number is None:
            problems = ["the engine's policy has no email step"]
        else:
            try:
                mail = await previews.preview(
                    number, language, checkout_id or None, shop_id=resolve_shop(key, None)
                )
            except InvalidInputError as err:
                problems = err.problems
        can_send = key.allows(Scope.MANAGE)
        outcome = request.query_params.get("outcome") == SENT and test_error is None
        response = show(
            "preview.html",
            key,
            400 if problems and status == 200 else status,
            # The email's own styles and images, in a sandboxed frame that inherits this.
            policy=MAILBOX if mail is not None else STRICT,
            steps=steps,
            number=number,
            languages=chosen.languages if chosen is not None else (),
            language=language,
            checkout_id=checkout_id,
            mail=mail,
            problems=problems,
            can_send=can_send,
            csrf_field=FIELD,
            csrf_token=tokens.token(request) if can_send else "",
            test_to=test_to,
            test_error=test_error,
            sent=outcome,
        )
        if can_send:
            # The test form's POST must carry an Origin (see api.dashboard.csrf).
            response.headers["Referrer-Policy"] = SAME_ORIGIN_REFERRER
        return response

    @router.get("/preview")
    async def preview_page(
        request: Request,
        key: Operator,
        step: Annotated[int | None, Query(ge=1, le=MAX_STEP)] = None,
        language: str = "",
        checkout: str = "",
    ) -> HTMLResponse:
        return await render(request, key, step, language.strip(), checkout.strip())

    @router.post("/preview/test")
    async def send_test(request: Request, key: Operator) -> Response:
        if not key.allows(Scope.MANAGE):
            return _refused(
                show,
                key,
                f"The key {key.name} ({key.id}) lacks the manage scope ({Scope.MANAGE.value}): "
                "it may preview, not send a test.",
            )
        form, problem = await tokens.posted_form(request)
        if problem is not None:
            logger.warning("Dashboard test send refused as possibly forged (key %s)", key.id)
            return _refused(show, key, problem)
        step = _number(form.get("step", ""))
        language = form.get("language", "").strip()
        checkout_id = form.get("checkout", "").strip()
        to = form.get("to", "").strip()
        page: dict[str, Any] = {"test_to": to}
        if step is None:
            return await render(
                request,
                key,
                None,
                language,
                checkout_id,
                status=400,
                test_error="Choose an email step.",
                **page,
            )
        try:
            await previews.send_test(
                step, language, checkout_id or None, to, shop_id=resolve_shop(key, None)
            )
        except InvalidInputError as err:
            return await render(
                request,
                key,
                step,
                language,
                checkout_id,
                status=400,
                test_error="; ".join(err.problems),
                **page,
            )
        except ConnectionError as err:
            return await render(
                request, key, step, language, checkout_id, status=502, test_error=str(err), **page
            )
        logger.info("Dashboard test send of step %s by key %s", step, key.id)
        return RedirectResponse(preview_url(step, language, checkout_id, SENT), status_code=303)

    return router


def _number(text: str) -> int | None:
    try:
        number = int(text)
    except ValueError:
        return None
    return number if 1 <= number <= MAX_STEP else None


def _refused(show: ShowPage, key: ApiKey, message: str) -> HTMLResponse:
    return show("action_refused.html", key, 403, message=message)
