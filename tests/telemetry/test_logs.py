"""The log formats: what a JSON line holds, where its ids come from, and the redaction both
formats share."""

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from domain.flow import workflow_id_for
from domain.steps import StepRequest
from telemetry.log_context import LogContextInterceptor, checkout_logged
from telemetry.logs import LogFormat, log_handler

EMAIL = "grace.hopper+shop@example.co.uk"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, dict[LogFormat, io.StringIO]]]:
    """A logger writing to one handler of each format."""
    logger = logging.getLogger(f"tests.telemetry.{id(object())}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    streams = {fmt: io.StringIO() for fmt in LogFormat}
    handlers = [log_handler(fmt, stream) for fmt, stream in streams.items()]
    for handler in handlers:
        logger.addHandler(handler)
    yield logger, streams
    for handler in handlers:
        logger.removeHandler(handler)


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_the_fields_and_an_exception_in_a_field(
    logged: tuple[logging.Logger, dict[LogFormat, io.StringIO]],
) -> None:
    logger, streams = logged
    try:
        raise ValueError(f"recipient {EMAIL} refused")
    except ValueError:
        logger.exception("Sending to %s failed", EMAIL)
    (line,) = _json_lines(streams[LogFormat.JSON])
    assert line["level"] == "ERROR" and line["logger"] == logger.name
    assert line["message"] == "Sending to <email> failed"
    assert datetime.fromisoformat(line["time"]).tzinfo is not None
    assert "ValueError: recipient <email> refused" in line["exception"]
    assert "checkout_id" not in line and "step" not in line
    text = streams[LogFormat.TEXT].getvalue()
    assert "Sending to <email> failed" in text and "recipient <email> refused" in text
    assert EMAIL not in text and EMAIL not in streams[LogFormat.JSON].getvalue()


def test_the_service_layers_binding_names_the_checkout_and_its_flow(
    logged: tuple[logging.Logger, dict[LogFormat, io.StringIO]],
) -> None:
    logger, streams = logged
    with checkout_logged("c-1", step=2):
        logger.info("inside")
    logger.info("outside")
    inside, outside = _json_lines(streams[LogFormat.JSON])
    assert (inside["checkout_id"], inside["workflow_id"], inside["step"]) == (
        "c-1",
        workflow_id_for("c-1"),
        2,
    )
    assert "checkout_id" not in outside


def test_the_sdks_workflow_details_are_flattened(
    logged: tuple[logging.Logger, dict[LogFormat, io.StringIO]],
) -> None:
    logger, streams = logged
    details = {"workflow_id": workflow_id_for("c-9"), "workflow_type": "W", "attempt": 1}
    logger.warning("Step 1 skipped", extra={"temporal_workflow": details})
    (line,) = _json_lines(streams[LogFormat.JSON])
    assert (line["checkout_id"], line["workflow_id"]) == ("c-9", workflow_id_for("c-9"))
    assert "temporal_workflow" not in line


class _Logging(ActivityInboundInterceptor):
    """The rest of the worker's chain: the activity, which logs."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        self._logger.info("sending")
        return None


async def test_a_step_activitys_lines_name_its_checkout_and_step(
    logged: tuple[logging.Logger, dict[LogFormat, io.StringIO]],
) -> None:
    logger, streams = logged
    request = StepRequest(
        checkout_id="c-5", workflow_id=workflow_id_for("c-5"), step_index=2, key="k", at=_NOW
    )
    chain = LogContextInterceptor().intercept_activity(_Logging(logger))
    await chain.execute_activity(
        ExecuteActivityInput(fn=print, args=[request], executor=None, headers={})
    )
    (line,) = _json_lines(streams[LogFormat.JSON])
    assert (line["checkout_id"], line["workflow_id"], line["step"]) == (
        "c-5",
        workflow_id_for("c-5"),
        3,
    )


_NOW = datetime(2026, 12, 1, tzinfo=UTC)
