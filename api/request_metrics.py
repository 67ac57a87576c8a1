"""How long each HTTP request took, per route template: the API latency histogram.

The label is the template of the route that matched (`/ecom/v1/abandoned-checkout/{checkout_id}`),
read after routing from the ASGI scope, never the path the caller sent: a path holds checkout ids
and link tokens, which must not become labels (one series each, and buyer data in a scrape).
"""

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from telemetry import metrics

UNMATCHED = "unmatched"
"""The route label of a request no route took (a 404 for an unknown path, say)."""


class RequestMetrics:
    """Pure ASGI middleware, outermost, so that it times everything the app does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before responding

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            metrics.api_request(
                route_template(scope), scope["method"], status, time.perf_counter() - started
            )


def route_template(scope: Scope) -> str:
    """The matched route's path template; routers write the route into the scope they share."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str) or not path:
        return UNMATCHED
    return path
