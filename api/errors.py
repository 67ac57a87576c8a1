"""Every error the HTTP service answers with: JSON with a stable code and a readable message.

Clients branch on `code` (stable across releases); `message` is for people; `details` lists the
fields at fault for validation errors. No input may produce a 500: anything unexpected is logged
with its traceback and answered with a generic `internal` error that reveals nothing.
"""

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.errors import InvalidInputError

logger = logging.getLogger(__name__)


class FieldProblem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """The JSON of every error response."""

    code: str
    message: str
    details: list[FieldProblem] | None = None


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Sequence[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details) if details is not None else None
        self.headers = headers


def invalid_input(err: InvalidInputError, code: str = "invalid_input") -> ApiError:
    """A 400 listing each problem of an InvalidInputError ("path: message") as a field problem."""
    details = [_split_problem(p) for p in err.problems]
    return ApiError(400, code, f"invalid {err.what}", details)


def _split_problem(problem: str) -> FieldProblem:
    field, sep, message = problem.partition(": ")
    return (
        FieldProblem(field=field, message=message)
        if sep
        else FieldProblem(field="", message=problem)
    )


def error_response(error: ApiError) -> JSONResponse:
    body = ErrorBody(code=error.code, message=error.message, details=error.details)
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=error.status, headers=error.headers
    )


# Answers a framework-level HTTP error (unknown path, wrong method) in our shape.
_STATUS_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def _location(loc: Sequence[int | str]) -> str:
    # FastAPI prefixes where the value came from ("body", "query", "path"); keep it, it helps.
    parts: list[str] = []
    for item in loc:
        parts.append(f"[{item}]" if isinstance(item, int) else (f".{item}" if parts else item))
    return "".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, ApiError)
        return error_response(err)

    async def on_invalid_input(_request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, InvalidInputError)
        return error_response(invalid_input(err))

    async def on_validation(_request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RequestValidationError)
        details = [
            FieldProblem(field=_location(e["loc"]), message=e["msg"].removeprefix("Value error, "))
            for e in err.errors()
        ]
        return error_response(ApiError(400, "invalid_request", "the request is not valid", details))

    async def on_http_error(_request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, StarletteHTTPException)
        code = _STATUS_CODES.get(err.status_code, f"http_{err.status_code}")
        message = err.detail if isinstance(err.detail, str) else code.replace("_", " ")
        headers = dict(err.headers) if err.headers else None
        return error_response(ApiError(err.status_code, code, message, headers=headers))

    async def on_unexpected(request: Request, err: Exception) -> JSONResponse:
        logger.exception("Unexpected error answering %s %s", request.method, request.url.path)
        return error_response(ApiError(500, "internal", "the service failed; it has been logged"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(InvalidInputError, on_invalid_input)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Invalid request; `details` names each field at fault"),
        (401, "No valid API key"),
        (403, "The API key lacks the scope"),
        (404, "Not found"),
        (413, "Request body too large"),
        (429, "Too many requests; `Retry-After` gives the seconds to wait"),
    )
}
"""Error responses every API route documents in the OpenAPI document."""


class BodySizeLimit:
    """Refuses request bodies above `max_bytes` with 413, whether or not Content-Length is sent.

    Checked before the body reaches JSON parsing, so a huge upload costs nothing but the bytes
    already read.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._max_bytes):
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_bytes:
                    raise _BodyTooLargeError
            return message

        try:
            await self._app(scope, limited_receive, send)
        except _BodyTooLargeError:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = ApiError(
            413, "body_too_large", f"the request body is larger than {self._max_bytes} bytes"
        )
        await error_response(error)(scope, receive, send)


class _BodyTooLargeError(Exception):
    pass
