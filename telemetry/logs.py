"""How the processes write their logs: plain text for people, or one JSON object per line.

`configure_logging` is the one place the root logger is set up. Both formats go through the same
two filters on the handler, so every record reaching it, ours or a library's, is treated alike:
`RedactingFilter` masks email addresses in the message and the exception text, and
`ContextFilter` adds the checkout id, workflow id and step the line is about (log_context).
"""

import datetime as dt
import json
import logging
import sys
from enum import StrEnum
from typing import IO, Any

from temporalio import activity, workflow

from telemetry.log_context import current_log_context
from telemetry.redaction import mask_emails

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_QUIET_LOGGERS = {
    # aiosmtpd logs every connection at INFO; the dev stack's own line per message is enough.
    "mail.log": logging.WARNING,
    # httpx logs every request's URL at INFO: subscribers' and staff webhook URLs, which often
    # carry a secret of their own (chat webhooks are bearer URLs).
    "httpx": logging.WARNING,
}


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class RedactingFilter(logging.Filter):
    """Masks anything that looks like an email address in the message and exception text.

    The record's message is rendered once here, masked, and kept as its message (no arguments
    left), so no handler or formatter after this one can render the unmasked text again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format
            message = f"{record.msg} (unformattable arguments)"
        masked = mask_emails(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_emails(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_emails(record.stack_info)
        return True


class ContextFilter(logging.Filter):
    """Adds `checkout_id`, `workflow_id` and `step` (None where unknown) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_log_context(record.__dict__)
        record.checkout_id = context.checkout_id
        record.workflow_id = context.workflow_id
        record.step = context.step
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids where known, and the
    exception's traceback in `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("checkout_id", "workflow_id", "step"):
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        sdk_activity = getattr(record, "temporal_activity", None)
        if isinstance(sdk_activity, dict) and sdk_activity.get("activity_type"):
            line["activity"] = sdk_activity["activity_type"]
            line["attempt"] = sdk_activity.get("attempt")
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


_FORMATTER = logging.Formatter()


def log_handler(log_format: LogFormat, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing `log_format` lines to `stream` (stderr), with both filters."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.addFilter(ContextFilter())
    handler.setFormatter(
        JsonFormatter() if log_format is LogFormat.JSON else logging.Formatter(TEXT_FORMAT)
    )
    return handler


def configure_logging(log_format: LogFormat, level: int = logging.INFO) -> None:
    """Route every logger to one handler on stderr in `log_format` (replacing any earlier one)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(log_handler(log_format))
    root.setLevel(level)
    # Python's warnings too, rather than as raw text on stderr between the lines.
    logging.captureWarnings(True)
    for name, quiet in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quiet)
    # The SDK's loggers append a dict of the flow's or activity's details to the message; the
    # JSON lines carry those as fields, so the message stays the message.
    sdk_suffixes = log_format is LogFormat.TEXT
    workflow.logger.workflow_info_on_message = sdk_suffixes
    activity.logger.activity_info_on_message = sdk_suffixes
