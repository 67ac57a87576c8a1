"""The login session: the operator's API key, encrypted into an HttpOnly cookie.

Encrypted (Fernet: AES-CBC with an HMAC), not merely signed, so the key cannot be read out of a
cookie jar or a proxy's header dump. The cookie expires with the session, and every request checks
the key again, so a revoked key ends the session within the Authenticator's cache time.
"""

import base64
import hashlib
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Request, Response

COOKIE = "checkout_recovery_dashboard"
PATH = "/dashboard"


class SessionCookies:
    def __init__(self, secret: str, lifetime: timedelta) -> None:
        # A key of its own for this purpose, whatever else the secret may be used for.
        digest = hashlib.sha256(b"dashboard-session\0" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._lifetime = lifetime

    def api_key(self, request: Request) -> str | None:
        """The API key of the request's session; None without a live, genuine cookie."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        try:
            token = self._fernet.decrypt(value, ttl=int(self._lifetime.total_seconds()))
        except InvalidToken:
            return None
        return token.decode()

    def start(self, response: Response, request: Request, api_key: str) -> None:
        response.set_cookie(
            COOKIE,
            self._fernet.encrypt(api_key.encode()).decode(),
            max_age=int(self._lifetime.total_seconds()),
            path=PATH,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    def end(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="lax")
