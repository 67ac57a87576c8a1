"""The login session: the operator's API key, encrypted into an HttpOnly cookie.

Encrypted (Fernet: AES-CBC with an HMAC), not merely signed, so the key cannot be read out of a
cookie jar or a proxy's header dump. The cookie expires with the session, and every request checks
the key again, so a revoked key ends the session within the Authenticator's cache time.

The cookie is read in the one spelling Fernet writes (padded base64url, see domain.links): Fernet's
own decoder skips stray characters and whatever follows the padding, so a cookie with bytes
appended would otherwise still be a session.
"""

import hashlib
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Request, Response

from domain.spelling import decode_base64url, encode_base64url

COOKIE = "checkout_recovery_dashboard"
PATH = "/dashboard"
MAX_COOKIE_CHARS = 4096
"""What a browser keeps of one cookie; a session cookie is a few hundred characters."""


class SessionCookies:
    def __init__(self, secret: str, lifetime: timedelta) -> None:
        # A key of its own for this purpose, whatever else the secret may be used for.
        digest = hashlib.sha256(b"dashboard-session\0" + secret.encode()).digest()
        self._fernet = Fernet(encode_base64url(digest, padded=True))
        self._lifetime = lifetime

    def api_key(self, request: Request) -> str | None:
        """The API key of the request's session; None without a live, genuine cookie."""
        return self.unseal(request.cookies.get(COOKIE))

    def seal(self, api_key: str) -> str:
        """The cookie value for a session of this key."""
        return self._fernet.encrypt(api_key.encode()).decode("ascii")

    def unseal(self, value: str | None) -> str | None:
        """The key a cookie value was sealed with, while the session lasts; None for any other
        value, whether forged, altered, expired or spelled in any way `seal` would not."""
        if not value or decode_base64url(value, padded=True, max_chars=MAX_COOKIE_CHARS) is None:
            return None
        try:
            api_key = self._fernet.decrypt(value, ttl=int(self._lifetime.total_seconds()))
            return api_key.decode("utf-8")
        except (InvalidToken, UnicodeDecodeError):
            return None

    def start(self, response: Response, request: Request, api_key: str) -> None:
        response.set_cookie(
            COOKIE,
            self.seal(api_key),
            max_age=int(self._lifetime.total_seconds()),
            path=PATH,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    def end(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="lax")
