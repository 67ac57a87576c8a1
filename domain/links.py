"""Signed recovery links: the buyer's way back to the checkout, through us, for attribution.

An email links to `{public_url}/ecom/v1/abandoned-checkout/{id}/redirect-to-checkout?token=...`;
the token proves that we made the link (for this checkout and step) and until when it is good, so
the redirect needs no API key and nobody can walk checkout ids to harvest checkout URLs.

Token: `{step}.{expires}.{signature}`, where expires is a Unix time and the signature is
HMAC-SHA256 over `{checkout id}.{step}.{expires}` in unpadded base64url. The checkout id is in
the path, not in the token, so a token cannot be moved to another checkout.

Tokens are read in one spelling only (domain.spelling): a token with bytes appended or another
script's digits is refused exactly as a forged one is.
"""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import quote

from domain.spelling import ascii_number, decode_base64url, encode_base64url

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

    def for_public_url(self, public_url: str) -> "LinkSigner":
        """The same secret and lifetime, links under another public URL (a shop's own)."""
        return LinkSigner(self._key.decode(), public_url, self._ttl)

    def token(self, checkout_id: str, step: int, issued_at: datetime) -> str:
        """Deterministic for its inputs, so a retried step renders the very same link."""
        expires = int((issued_at + self._ttl).timestamp())
        signature = encode_base64url(self._sign(checkout_id, step, expires))
        return f"{step}.{expires}.{signature}"

    def url(self, checkout_id: str, step: int, issued_at: datetime) -> str:
        path = REDIRECT_PATH.format(checkout_id=quote(checkout_id, safe=""))
        return f"{self._public_url}{path}?token={self.token(checkout_id, step, issued_at)}"

    def verify(self, checkout_id: str, token: str, now: datetime | None = None) -> LinkVerdict:
        parts = token.split(".")
        if len(parts) != 3:
            return LinkVerdict(LinkCheck.FORGED)
        step, expires = ascii_number(parts[0]), ascii_number(parts[1])
        signature = decode_base64url(parts[2])
        if (
            step is None
            or expires is None
            or signature is None
            or not hmac.compare_digest(signature, self._sign(checkout_id, step, expires))
        ):
            return LinkVerdict(LinkCheck.FORGED)
        moment = now or datetime.now(UTC)
        if moment.timestamp() > expires:
            return LinkVerdict(LinkCheck.EXPIRED, step)
        return LinkVerdict(LinkCheck.GOOD, step)

    def unsubscribe_token(self, checkout_id: str) -> str:
        """`{checkout id}.{signature}`; it never expires: an unsubscribe link must keep working
        (RFC 8058) for as long as the email may be read."""
        return f"{checkout_id}.{encode_base64url(self._unsubscribe_mac(checkout_id))}"

    def unsubscribe_url(self, checkout_id: str) -> str:
        # Quoted, so that a checkout id with `&`, `+` or `#` reaches us as it was signed.
        token = quote(self.unsubscribe_token(checkout_id), safe="")
        return f"{self._public_url}{UNSUBSCRIBE_PATH}?token={token}"

    def verify_unsubscribe(self, token: str) -> str | None:
        """The checkout id an unsubscribe token was made for; None when it is not ours."""
        checkout_id, _, encoded = token.rpartition(".")
        signature = decode_base64url(encoded)
        if (
            not checkout_id
            or signature is None
            or not hmac.compare_digest(signature, self._unsubscribe_mac(checkout_id))
        ):
            return None
        return checkout_id

    def _sign(self, checkout_id: str, step: int, expires: int) -> bytes:
        return self._mac(f"{checkout_id}.{step}.{expires}")

    def _unsubscribe_mac(self, checkout_id: str) -> bytes:
        return self._mac(f"unsubscribe:{checkout_id}")

    def _mac(self, message: str) -> bytes:
        # surrogatepass: the same bytes as UTF-8 for every real text, and no error on a lone
        # surrogate, which must be refused as any other forgery rather than fail.
        data = message.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, data, hashlib.sha256).digest()
