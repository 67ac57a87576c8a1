"""Signed recovery links: the buyer's way back to the checkout, through us, for attribution.

An email links to `{public_url}/ecom/v1/abandoned-checkout/{id}/redirect-to-checkout?token=...`;
the token proves that we made the link (for this checkout and step) and until when it is good, so
the redirect needs no API key and nobody can walk checkout ids to harvest checkout URLs.

Token: `{step}.{expires}.{signature}`, where expires is a Unix time and the signature is
HMAC-SHA256 over `{checkout id}.{step}.{expires}` in unpadded base64url. The checkout id is in
the path, not in the token, so a token cannot be moved to another checkout.
"""

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import quote

REDIRECT_PATH = "/ecom/v1/abandoned-checkout/{checkout_id}/redirect-to-checkout"
UNSUBSCRIBE_PATH = "/ecom/v1/abandoned-checkout/unsubscribe"


class LinkCheck(StrEnum):
    GOOD = "good"
    FORGED = "forged"
    """Malformed, or not signed with our secret for this checkout."""
    EXPIRED = "expired"


@dataclass(frozen=True)
class LinkVerdict:
    check: LinkCheck
    step: int | None = None
    """The step whose message carried the link (0 when made outside a step)."""


class LinkSigner:
    def __init__(self, secret: str, public_url: str, ttl: timedelta) -> None:
        if len(secret) < 16:
            raise ValueError("the link signing secret must be at least 16 characters")
        self._key = secret.encode()
        self._public_url = public_url.rstrip("/")
        self._ttl = ttl

    def token(self, checkout_id: str, step: int, issued_at: datetime) -> str:
        """Deterministic for its inputs, so a retried step renders the very same link."""
        expires = int((issued_at + self._ttl).timestamp())
        return f"{step}.{expires}.{self._sign(checkout_id, step, expires)}"

    def url(self, checkout_id: str, step: int, issued_at: datetime) -> str:
        path = REDIRECT_PATH.format(checkout_id=quote(checkout_id, safe=""))
        return f"{self._public_url}{path}?token={self.token(checkout_id, step, issued_at)}"

    def verify(self, checkout_id: str, token: str, now: datetime | None = None) -> LinkVerdict:
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            return LinkVerdict(LinkCheck.FORGED)
        step, expires = int(parts[0]), int(parts[1])
        if not hmac.compare_digest(parts[2], self._sign(checkout_id, step, expires)):
            return LinkVerdict(LinkCheck.FORGED)
        moment = now or datetime.now(UTC)
        if moment.timestamp() > expires:
            return LinkVerdict(LinkCheck.EXPIRED, step)
        return LinkVerdict(LinkCheck.GOOD, step)

    def unsubscribe_token(self, checkout_id: str) -> str:
        """`{checkout id}.{signature}`; it never expires: an unsubscribe link must keep working
        (RFC 8058) for as long as the email may be read."""
        return f"{checkout_id}.{self._mac(f'unsubscribe:{checkout_id}')}"

    def unsubscribe_url(self, checkout_id: str) -> str:
        return f"{self._public_url}{UNSUBSCRIBE_PATH}?token={self.unsubscribe_token(checkout_id)}"

    def verify_unsubscribe(self, token: str) -> str | None:
        """The checkout id an unsubscribe token was made for; None when it is not ours."""
        checkout_id, _, signature = token.rpartition(".")
        if not checkout_id or not hmac.compare_digest(
            signature, self._mac(f"unsubscribe:{checkout_id}")
        ):
            return None
        return checkout_id

    def _sign(self, checkout_id: str, step: int, expires: int) -> str:
        return self._mac(f"{checkout_id}.{step}.{expires}")

    def _mac(self, message: str) -> str:
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
