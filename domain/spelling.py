"""One spelling for every value the engine hands out to be given back: numbers and base64url.

The recovery and unsubscribe links, the dashboard session cookie and query cursors are read with
`ascii_number` and `decode_base64url`, which accept exactly what `str(number)` and
`encode_base64url` write. Python's own parsers are kinder: int() reads digits of any script,
signs, underscores and surrounding whitespace; b64decode skips characters outside its alphabet
and ignores what follows the padding. A kinder reading gives one value many spellings, so a token
with bytes appended or another script's digits would be honoured.
"""

import base64
import binascii

MAX_DIGITS = 18
"""Longest number a token may carry: any Unix time or step, and far from int()'s own limits."""


def ascii_number(text: str, *, max_digits: int = MAX_DIGITS) -> int | None:
    """The number `text` spells as `str(number)` writes it: ASCII digits only, no sign, no
    leading zero, nothing before or after; None for any other text."""
    if not 0 < len(text) <= max_digits or not (text.isascii() and text.isdigit()):
        return None
    if text[0] == "0" and len(text) > 1:
        return None
    return int(text)


def encode_base64url(raw: bytes, *, padded: bool = False) -> str:
    """URL-safe base64 (RFC 4648 section 5), with or without its `=` padding."""
    text = base64.urlsafe_b64encode(raw).decode("ascii")
    return text if padded else text.rstrip("=")


def decode_base64url(text: str, *, padded: bool = False, max_chars: int = 4096) -> bytes | None:
    """The bytes `text` encodes when it is exactly what `encode_base64url(raw, padded=padded)`
    writes for them; None for anything else: another alphabet, other padding, unused bits set,
    whitespace or any other character, data after the end, more than `max_chars` characters."""
    if len(text) > max_chars or not text.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(text if padded else text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        return None
    return raw if encode_base64url(raw, padded=padded) == text else None
