"""Temporal's remote codec protocol, so the Web UI and the CLI can read encrypted histories.

With payload encryption on, the Temporal service holds only ciphertext; the Web UI (running in the
operator's browser) and `temporal workflow show --codec-endpoint ...` send the payloads here and
show what comes back. The protocol (Temporal's "Codec Server"):

- `POST {endpoint}/decode` and `POST {endpoint}/encode`, JSON body `{"payloads": [...]}` in
  protobuf's JSON mapping (metadata values and data in base64), answered in the same shape;
- the `X-Namespace` header names the namespace; our keys are the same for every namespace, so it
  is accepted and only logged;
- a body that is not such JSON, or payloads the codec refuses, answer 400.

The endpoint is `{public_url}/codec`, for API keys (`Authorization: Bearer`, read scope): the CLI,
or a Web UI that passes its own access token. For operators signed into the dashboard it is also
served at `{public_url}/dashboard/codec`, under the session cookie's path, so a Web UI told to
include cross-origin credentials sends that cookie along (`CodecAccess`). The browser calls it
cross-origin (the UI is served from another port or host), so `add_codec_cors` must be installed
for the UI's origins; a request authenticated by the cookie is refused unless its `Origin` is one
of them, since a cookie, unlike a key, is sent by the browser whoever asks.
"""

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from google.protobuf import json_format
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from api.auth import Authenticator, Credentials
from api.dashboard.session import PATH as SESSION_PATH
from api.dashboard.session import SessionCookies
from api.errors import ERROR_RESPONSES, ApiError, error_response
from codec.payload_codec import PayloadDecryptionError
from domain.access import ApiKey, Scope

logger = logging.getLogger(__name__)

CODEC_PATH = "/codec"
SESSION_CODEC_PATH = f"{SESSION_PATH}/codec"
"""The same routes under the dashboard session cookie's path, which browsers send the cookie to."""
_MAX_AGE_SECONDS = 600
# The headers the Web UI and the CLI send: the UI adds Authorization only when told to pass its
# access token; X-Namespace always.
_ALLOWED_HEADERS = ("Authorization", "Content-Type", "X-Namespace")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?")


class CodecAccess:
    """Who may call the codec: an API key with the read scope, or a dashboard session.

    A FastAPI dependency. A request with `Authorization: Bearer` is judged by its key alone, as
    every API route judges it. Without one, the dashboard's session cookie (when `sessions` is
    given) stands in for the key it holds, with two extra conditions: the request's `Origin` must
    be one of `origins` (the configured Web UI origins), and the key must still hold the read
    scope. The Origin check is what keeps another page the operator visits, say on another port
    of the same host (same-site, so the Lax cookie goes along), from decoding with the operator's
    session; browsers always send Origin on a cross-origin POST and cannot be made to fake it.
    Either way the request spends the key's rate budget.
    """

    def __init__(
        self, auth: Authenticator, sessions: SessionCookies | None, origins: Iterable[str]
    ) -> None:
        self._auth = auth
        self._require_key = auth.require(Scope.READ)
        self._sessions = sessions
        self._origins = frozenset(origins)

    async def __call__(self, request: Request, credentials: Credentials) -> ApiKey:
        if credentials is not None or self._sessions is None:
            return await self._require_key(credentials)
        token = self._sessions.api_key(request)
        if token is None:
            raise _unauthorized(
                "the codec needs an API key (Authorization: Bearer <key>) or, from the Temporal "
                "Web UI, a dashboard session: sign into the dashboard first"
            )
        origin = request.headers.get("origin")
        if origin is None or origin not in self._origins:
            # Never echo the origin: it is whatever the caller chose to send.
            raise ApiError(
                403,
                "origin_not_allowed",
                "a dashboard session is accepted only from the configured Web UI origins "
                "(CHECKOUT_RECOVERY_CODEC_CORS_ORIGINS)",
            )
        key = await self._auth.authenticate(token)
        if key is None:
            raise _unauthorized("the dashboard session's API key is no longer valid")
        self._auth.spend(key)
        if not key.allows(Scope.READ):
            raise ApiError(403, "forbidden", f"the API key {key.id} lacks the scope read")
        return key


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def codec_router(
    codec: PayloadCodec | None,
    authorize: Callable[..., Awaitable[object]] | None,
    prefix: str = CODEC_PATH,
    include_in_schema: bool = True,
) -> APIRouter:
    """`POST {prefix}/encode` and `POST {prefix}/decode`, behind `authorize` when given.

    Without a codec (no keys configured) both routes answer 404 `codec_disabled`, after the
    authorization check, so an anonymous caller learns nothing about the configuration.
    """
    dependencies = [Depends(authorize)] if authorize is not None else []
    router = APIRouter(
        prefix=prefix,
        tags=["codec"],
        dependencies=dependencies,
        include_in_schema=include_in_schema,
    )

    async def run(request: Request, namespace: str | None, direction: str) -> JSONResponse:
        if codec is None:
            return error_response(
                ApiError(
                    404,
                    "codec_disabled",
                    "payload encryption is not configured (CHECKOUT_RECOVERY_CODEC_KEYS), "
                    "so there is nothing to encode or decode",
                )
            )
        parsed = _parse_payloads(await request.body())
        if isinstance(parsed, ApiError):
            return error_response(parsed)
        logger.debug("Codec %s of %d payloads for namespace %s", direction, len(parsed), namespace)
        try:
            if direction == "encode":
                result = await codec.encode(parsed)
            else:
                result = await codec.decode(parsed)
        except PayloadDecryptionError as err:
            # Its message names the key id at most; safe to show.
            return error_response(ApiError(400, "undecryptable_payload", str(err)))
        except Exception:
            logger.exception("The payload codec failed to %s %d payloads", direction, len(parsed))
            return error_response(
                ApiError(400, "codec_failed", f"the payload codec could not {direction} these")
            )
        return JSONResponse({"payloads": [json_format.MessageToDict(p) for p in result]})

    @router.post(
        "/encode",
        summary="Encrypt payloads (Temporal remote codec protocol)",
        responses=ERROR_RESPONSES,
    )
    async def encode(
        request: Request,
        x_namespace: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """What the Web UI and CLI call before sending input (start, signal) to Temporal."""
        return await run(request, x_namespace, "encode")

    @router.post(
        "/decode",
        summary="Decrypt payloads (Temporal remote codec protocol)",
        responses=ERROR_RESPONSES,
    )
    async def decode(
        request: Request,
        x_namespace: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """What the Web UI and CLI call to show a history's inputs, results and signals."""
        return await run(request, x_namespace, "decode")

    return router


def _parse_payloads(body: bytes) -> list[Payload] | ApiError:
    """The payloads of a `{"payloads": [...]}` proto-JSON body, or the 400 that explains why not.

    Strict about unknown fields: a payload field this protobuf version does not know would be
    dropped silently, and an encode of it would lose data.
    """
    try:
        document: Any = json.loads(body)
    except ValueError:
        return _invalid("the body is not JSON")
    if not isinstance(document, dict) or not isinstance(document.get("payloads"), list):
        return _invalid('the body must be a JSON object with a "payloads" array')
    problem = _bytes_problem(document["payloads"])
    if problem is not None:
        return _invalid(problem)
    message = Payloads()
    try:
        json_format.ParseDict(document, message)
    except (json_format.ParseError, ValueError, TypeError) as err:
        return _invalid(f"the payloads are not Temporal payloads in proto JSON: {_brief(err)}")
    return list(message.payloads)


def _bytes_problem(payloads: list[Any]) -> str | None:
    """Where a bytes field is not base64, or None.

    protobuf's own parser skips characters outside the base64 alphabet, so garbage would pass as
    some other bytes; proto JSON allows standard or URL-safe base64, padded or not.
    """
    for index, payload in enumerate(payloads):
        if not isinstance(payload, dict):
            return f"payloads[{index}] is not an object"
        metadata = payload.get("metadata", {})
        if not isinstance(metadata, dict):
            return f"payloads[{index}].metadata is not an object"
        fields = {f"metadata.{name}": value for name, value in metadata.items()}
        if "data" in payload:
            fields["data"] = payload["data"]
        for name, value in fields.items():
            if not isinstance(value, str) or not _BASE64.fullmatch(value):
                return f"payloads[{index}].{name} is not base64"
    return None


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_payloads", message)


def _brief(err: Exception) -> str:
    """protobuf's parse error names the field at fault; cap it, as it may quote the input."""
    text = str(err)
    return text if len(text) <= 200 else text[:200] + "..."


def parse_origins(text: str) -> list[str]:
    """Comma-separated origins as configured (CHECKOUT_RECOVERY_CODEC_CORS_ORIGINS).

    A trailing slash is dropped (browsers send origins without one, so it would never match);
    "*" is refused: with credentials allowed it would let any web page call the codec.
    """
    origins: list[str] = []
    for raw in text.split(","):
        origin = raw.strip().rstrip("/")
        if not origin:
            continue
        if origin == "*" or "://" not in origin:
            raise ValueError(
                f"codec CORS origin {origin!r} must be a scheme://host[:port] origin, not a "
                "wildcard"
            )
        origins.append(origin)
    return origins


def add_codec_cors(
    app: FastAPI, origins: Iterable[str], paths: Sequence[str] = (CODEC_PATH,)
) -> None:
    """Let the Temporal Web UI at `origins` call the codec routes under `paths` from the browser.

    Only requests under those paths get CORS headers: the rest of the API keeps its own
    cross-origin policy. Credentials are allowed (`Access-Control-Allow-Credentials: true`, to
    the listed origins only) because the UI can send the dashboard's cookie ("include
    cross-origin credentials") or its access token. It also answers Chrome's Private Network
    Access preflight, so a hosted UI may reach a codec endpoint on the operator's own machine.
    Install it with the other middleware, before the app starts.
    """
    app.add_middleware(_CodecCors, origins=list(origins), paths=list(paths))


class _CodecCors:
    """CORS for the codec's path prefixes; other requests go straight to the app.

    Being middleware (not route code), it answers preflight OPTIONS requests, which carry no
    credentials and never reach the authorization dependency, and it adds the allow headers to
    error responses (401, 400) so the browser lets the UI see them instead of a CORS failure.
    An origin not listed gets no CORS header at all, so its page can read nothing.
    """

    def __init__(self, app: ASGIApp, origins: Sequence[str], paths: Sequence[str]) -> None:
        self._app = app
        self._origins = frozenset(origins)
        self._paths = tuple(path.rstrip("/") for path in paths)
        self._allowed_headers = frozenset(h.lower() for h in _ALLOWED_HEADERS)

    def _scoped(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self._paths)

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._scoped(scope.get("path", "")):
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(headers, origin)(scope, receive, send)
            return
        allowed = origin is not None and origin in self._origins

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers.add_vary_header("Origin")
                if allowed and origin is not None:
                    response_headers["Access-Control-Allow-Origin"] = origin
                    response_headers["Access-Control-Allow-Credentials"] = "true"
            await send(message)

        await self._app(scope, receive, send_with_cors)

    def _preflight(self, headers: Headers, origin: str | None) -> PlainTextResponse:
        vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        answer = {"Vary": vary + ", Access-Control-Request-Private-Network"}
        requested = headers.get("access-control-request-headers", "")
        wanted = {h.strip().lower() for h in requested.split(",") if h.strip()}
        if (
            origin is None
            or origin not in self._origins
            or headers["access-control-request-method"] != "POST"
            or not wanted <= self._allowed_headers
        ):
            return PlainTextResponse("Disallowed CORS request", status_code=400, headers=answer)
        answer.update(
            {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": ", ".join(_ALLOWED_HEADERS),
                "Access-Control-Max-Age": str(_MAX_AGE_SECONDS),
            }
        )
        if "access-control-request-private-network" in headers:
            answer["Access-Control-Allow-Private-Network"] = "true"
        return PlainTextResponse("OK", status_code=200, headers=answer)
