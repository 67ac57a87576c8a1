"""The workflow history summary lives in service.history_summary, where the dashboard reads it
too; the CLI's `checkouts history` prints its rows. Kept so that existing imports go on working."""

from service.history_summary import (
    HistoryRow,
    decode_failure_messages,
    duration_text,
    failure_text,
    summarise_history,
)

__all__ = [
    "HistoryRow",
    "decode_failure_messages",
    "duration_text",
    "failure_text",
    "summarise_history",
]
