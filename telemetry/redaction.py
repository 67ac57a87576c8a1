"""Masking what looks like an email address, wherever text leaves the process (logs, spans).

The last line of defence, not the first: code logs ids and never buyer data, but an exception's
text is written by someone else (an SMTP refusal quotes the recipient, a database error may
quote the row it failed on), and one slip must not put a buyer's address in a log store.
"""

import re

# Deliberately broad: anything@anything.tld. A false positive costs a masked word in a log
# line; a false negative costs an address in a log store for as long as it is kept.
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}", re.UNICODE)

MASK = "<email>"


def mask_emails(text: str) -> str:
    """`text` with every email-like substring replaced by MASK."""
    if "@" not in text:  # the common case, without running the pattern
        return text
    return _EMAIL.sub(MASK, text)
