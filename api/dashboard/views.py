"""Rendering the dashboard's pages: one jinja2 environment, and the headers every page carries."""

from datetime import UTC, datetime
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_env = Environment(
    loader=PackageLoader("api.dashboard", "templates"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _moment(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


_env.filters["moment"] = _moment

# No script anywhere, styles from our own stylesheet only, nothing loaded from elsewhere.
STRICT = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# The mailbox shows emails as sent: inline styles and remote images, in a sandboxed srcdoc frame
# that inherits this policy (so still no script).
MAILBOX = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data: http: https:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def page(template: str, status: int = 200, *, policy: str = STRICT, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(**context)
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Content-Security-Policy": policy,
            # Pages show buyers' data: keep them out of caches and referrers.
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )
