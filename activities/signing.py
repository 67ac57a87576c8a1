"""HMAC-SHA256 signatures for outgoing webhook bodies."""

import hashlib
import hmac

SIGNATURE_HEADER = "X-Checkout-Recovery-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign_body(secret: str, body: bytes) -> str:
    """The header value a receiver recomputes over the raw body to trust it: `sha256=<hex>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
