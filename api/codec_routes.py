"""Temporal's remote codec protocol, so the Web UI and the CLI can read encrypted histories.

With payload encryption on, the Temporal service holds only ciphertext; the Web UI (running in the
operator's browser) and `temporal workflow show --codec-endpoint ...` send the payloads here and
show what comes back. The protocol (Temporal's "Codec Server"):

- `POST {endpoint}/decode` and `POST {endpoint}/encode`, JSON body `{"payloads": [...]}` in
  protobuf's JSON mapping (metadata values and data in base64), answered in the same shape;
- the `X-Namespace` header names the namespace; our keys are the same for every namespace, so it
  is accepted and only logged;
- a body that is not such JSON, or payloads the codec refuses, answer 400.

The endpoint is `{public_url}/codec`. The browser calls it cross-origin (the UI is served from
another port or host), so `add_codec_cors` must be installed for the UI's origin.
"""

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from api.errors import ERROR_RESPONSES, ApiError, error_response
from codec.payload_codec import PayloadDecryptionError

logger = logging.getLogger(__name__)

CODEC_PATH = "/codec"
# The headers the Web UI and the CLI send: the UI adds Authorization only when told to pass its
# access token; X-Namespace always.
_ALLOWED_HEADERS = ("Authorization", "Content-Type", "X-Namespace")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?")


def codec_router(
    codec: PayloadCodec | None,
    authorize: Callable[..., Awaitable[object]] | None,
) -> APIRouter:
    """`POST /codec/encode` and `POST /codec/decode`, behind `authorize` when given.

    Without a codec (no keys configured) both routes answer 404 `codec_disabled`, after the
    authorization check, so an anonymous caller learns nothing about the configuration.
    """
    dependencies = [Depends(authorize)] if authorize is not None else []
    router = APIRouter(prefix=CODEC_PATH, tags=["codec"], dependencies=dependencies)

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


def add_codec_cors(app: FastAPI, origins: Iterable[str], path: str = CODEC_PATH) -> None:
    """Let the Temporal Web UI at `origins` call the codec routes from the browser.

    Starlette's CORSMiddleware, but only for requests under `path`: the rest of the API keeps its
    own cross-origin policy. Credentials are allowed because the UI can send cookies ("include
    cross-origin credentials") or its access token. It also answers Chrome's Private Network
    Access preflight, so a hosted UI may reach a codec endpoint on the operator's own machine.
    Install it with the other middleware, before the app starts.
    """
    app.add_middleware(_PathScopedCors, origins=list(origins), path=path)


class _PathScopedCors:
    """CORSMiddleware applied to one path prefix; other requests go straight to the app.

    Being middleware (not route code), it also answers preflight OPTIONS requests, which carry no
    credentials and never reach the authorization dependency, and it adds the allow headers to
    error responses (401, 400) so the browser lets the UI see them instead of a CORS failure.
    """

    def __init__(self, app: ASGIApp, origins: Sequence[str], path: str) -> None:
        self._app = app
        self._path = path.rstrip("/")
        self._cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=("POST",),
            allow_headers=_ALLOWED_HEADERS,
            allow_credentials=True,
            allow_private_network=True,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == self._path or path.startswith(self._path + "/"):
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)
