"""Cross-site request forgery: what every dashboard form that changes something must pass.

Two checks, both required:

- a token in a hidden field, an HMAC of the session cookie (so of this one login) under a key
  derived from the dashboard's session secret: another site can make the browser send the
  cookie, but cannot read the page that carries the token;
- the request's Origin (or, without one, its Referer) names this very service.

The pages holding such forms send `Referrer-Policy: same-origin` (see SAME_ORIGIN_REFERRER): under
the dashboard's usual `no-referrer`, browsers send `Origin: null` with a form's POST.
"""

import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

from fastapi import Request

from api.dashboard.session import COOKIE
from domain.spelling import encode_base64url

FIELD = "csrf_token"
SAME_ORIGIN_REFERRER = "same-origin"


class CsrfTokens:
    def __init__(self, secret: str) -> None:
        # A key of its own for this purpose, as the session cookies have theirs.
        self._key = hashlib.sha256(b"dashboard-csrf\0" + secret.encode()).digest()

    def token(self, request: Request) -> str:
        """The token for the forms of this request's session; empty without a session."""
        session = request.cookies.get(COOKIE)
        return self.for_session(session) if session else ""

    def for_session(self, session: str) -> str:
        """The token for the forms of the session whose cookie value is `session`."""
        digest = hmac.new(self._key, session.encode(), hashlib.sha256).digest()
        return encode_base64url(digest, padded=False)

    async def posted_form(self, request: Request) -> tuple[dict[str, str], str | None]:
        """A dashboard form's POST (urlencoded, read by hand as the login form is: each field's
        first value), and why it is refused as possibly forged; None when it is genuine."""
        raw = parse_qs((await request.body()).decode(errors="replace"), keep_blank_values=True)
        form = {name: values[0] for name, values in raw.items()}
        return form, self.problem(request, form.get(FIELD, ""))

    def problem(self, request: Request, given: str) -> str | None:
        """Why a form's post is refused as possibly forged; None when it passes both checks."""
        if not _same_origin(request):
            return "The form was not sent from this dashboard (its Origin or Referer differs)."
        expected = self.token(request)
        if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
            return "The form's security token is missing or wrong; reload the page and try again."
        return None


def _same_origin(request: Request) -> bool:
    own = _origin_of(str(request.base_url))
    origin = request.headers.get("origin")
    if origin is not None:
        return origin != "null" and _origin_of(origin) == own
    referer = request.headers.get("referer")
    return referer is not None and _origin_of(referer) == own


def _origin_of(url: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return parts.scheme.lower(), parts.netloc.lower()
