"""The SMS tests' provider: a real local HTTP server speaking Twilio's Messages API."""

from collections.abc import Iterator

import pytest

from tests.sms.twilio_server import TwilioServer, twilio_server


@pytest.fixture
def twilio() -> Iterator[TwilioServer]:
    with twilio_server() as server:
        yield server
