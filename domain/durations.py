"""Human durations as written in policy files: "90s", "1h", "1h30m", "3d", "2w"."""

import re
from datetime import UTC, datetime, timedelta

_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"([0-9]+)\s*([wdhms])", re.ASCII)
_WHOLE = re.compile(r"\s*(?:[0-9]+\s*[wdhms]\s*)+", re.ASCII)
MAX_DURATION = timedelta(days=3650)
"""The longest duration a policy may name (about ten years): far beyond any recovery flow, and
small enough that adding it to any date the engine keeps stays a date."""
MAX_DURATION_SPELLING = 64
"""The longest spelling of a duration read (checked before the pattern runs)."""
FORMS = "'90s', '15m', '1h30m', '3d' or '2w'"


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise ValueError with the accepted forms when the text is not one, or
    when it is longer than MAX_DURATION. ASCII digits only."""
    if len(text) > MAX_DURATION_SPELLING or not _WHOLE.fullmatch(text):
        shown = repr(text) if len(text) <= MAX_DURATION_SPELLING else "this"
        raise ValueError(f"{shown} is not a duration; write it like {FORMS}")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(
            f"{text!r} is longer than {MAX_DURATION.days}d (about ten years), the most allowed"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest policy-file spelling of a duration (the inverse of parse_duration)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _UNIT_SECONDS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_moment(text: str, now: datetime) -> datetime:
    """A window bound as people write it: a duration back from now (`7d`, `12h`), an ISO date
    (midnight UTC) or an ISO date-time (UTC when it names no zone).

    Raises ValueError naming the accepted forms.
    """
    text = text.strip()
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration back from now (7d, 12h) nor an ISO date or "
            "date-time (2025-01-31, 2025-01-31T08:00:00+01:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
