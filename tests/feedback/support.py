"""What the readers' tests share: the samples, and a request as the route hands it over."""

import json
from pathlib import Path
from typing import Any

from api.feedback.source import FeedbackRequest

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def request(body: bytes, headers: dict[str, str] | None = None) -> FeedbackRequest:
    return FeedbackRequest(
        url="https://recovery.example/feedback/v1/test", headers=headers or {}, body=body
    )
