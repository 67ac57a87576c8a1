"""The relays' bounce and complaint webhooks: `POST /feedback/v1/{provider}`.

No API key: a relay cannot send one, and each provider's own signature is the proof (verified by
its reader, api.feedback). What the reports then do is store.feedback's. The log says how many
reports came and what they did, never an address: the body is the buyer's data.
"""

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.errors import ERROR_RESPONSES, ApiError
from api.feedback.source import FeedbackRefusedError, FeedbackRequest, FeedbackSource
from store.feedback import FeedbackStore

logger = logging.getLogger(__name__)

PATH = "/feedback/v1/{provider}"


class FeedbackAnswer(BaseModel):
    received: int
    """Reports in the call."""
    suppressed: int
    """Suppressions they made (a retry, or an address suppressed already, makes none)."""
    note: str | None = None
    """A call that was no report (an SNS subscription confirmed) says what it was."""


def feedback_router(sources: Mapping[str, FeedbackSource], feedback: FeedbackStore) -> APIRouter:
    """`sources`: the configured providers' readers by name; any other name is not found."""
    responses: dict[int | str, dict[str, Any]] = {
        **{status: ERROR_RESPONSES[status] for status in (400, 404, 413)},
        401: {**ERROR_RESPONSES[401], "description": "The provider's signature is not valid"},
    }
    router = APIRouter(tags=["feedback"], responses=responses)

    @router.post(
        PATH,
        summary="A relay's bounce and complaint events",
        response_model=FeedbackAnswer,
        response_model_exclude_none=True,
    )
    async def receive(provider: str, request: Request) -> FeedbackAnswer:
        """Verified with the provider's signature; hard bounces and complaints suppress the
        address and stop the buyer's next emails, soft bounces are counted. A retried call is
        harmless."""
        source = sources.get(provider)
        if source is None:
            raise ApiError(
                404, "feedback_not_configured", "no feedback webhook is configured at this path"
            )
        call = FeedbackRequest(
            url=str(request.url),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.body(),
        )
        try:
            reading = await source.read(call)
        except FeedbackRefusedError as err:
            logger.warning("Feedback from %s refused (%s): %s", source.name, err.status, err.code)
            raise ApiError(err.status, err.code, str(err)) from None
        if not reading.reports:
            return FeedbackAnswer(received=0, suppressed=0, note=reading.note)
        done = await feedback.record_feedback(reading.reports, datetime.now(UTC))
        logger.info(
            "Feedback from %s: %s reports, %s new, %s suppressions, %s flows told",
            source.name,
            done.received,
            done.recorded,
            done.suppressed,
            len(done.flows_told),
        )
        return FeedbackAnswer(received=done.received, suppressed=done.suppressed, note=reading.note)

    return router
