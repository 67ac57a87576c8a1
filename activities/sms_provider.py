"""Sending a text through a provider's HTTP API, behind one small interface.

The first provider speaks Twilio's Messages API, which several others copy (the base URL is a
setting): `POST {base}/2010-04-01/Accounts/{sid}/Messages.json` with form fields To, From and
Body, HTTP basic auth account SID : auth token; 201 with JSON `sid` and `status`; an error is
JSON with `code` and `message`.
"""

from dataclasses import dataclass
from typing import Protocol

import httpx

from domain.sms import SmsProviderConfig


@dataclass(frozen=True)
class SentSms:
    provider_id: str
    """The provider's id of the message (Twilio's `SM...` sid)."""
    status: str


class SmsRejectedError(Exception):
    """The provider refused the message for good (4xx): the same request fails again."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(f"SMS provider answered {status} (code {code or '-'}): {message}")


class SmsUnavailableError(Exception):
    """The provider answered 5xx or 429, or could not be reached: trying again later may work.
    The message certainly was not accepted."""


class SmsInDoubtError(Exception):
    """The request went out and no answer came back (a read timeout, a dropped connection): the
    provider may have accepted the text."""


class SmsProvider(Protocol):
    async def send(self, to: str, body: str) -> SentSms:
        """Send `body` to the E.164 number `to`; SmsRejectedError, SmsUnavailableError or
        SmsInDoubtError."""
        ...


class TwilioSms:
    """Twilio's Messages API (or a compatible one at another base URL)."""

    def __init__(self, http: httpx.AsyncClient, config: SmsProviderConfig) -> None:
        self._http = http
        self._config = config
        sid = config.account_sid
        self._url = f"{config.base_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
        self._auth = httpx.BasicAuth(sid, config.auth_token.get_secret_value())

    async def send(self, to: str, body: str) -> SentSms:
        form = {"To": to, "From": self._config.from_number, "Body": body}
        try:
            response = await self._http.post(self._url, data=form, auth=self._auth)
        except (httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError) as err:
            raise SmsInDoubtError(f"no answer from the SMS provider: {type(err).__name__}") from err
        except httpx.TransportError as err:
            # Refused, unreachable, or the request not written whole: the text did not go.
            raise SmsUnavailableError(f"SMS provider unreachable: {type(err).__name__}") from err
        if response.status_code == 429 or response.status_code >= 500:
            raise SmsUnavailableError(f"SMS provider answered {response.status_code}")
        if response.status_code >= 400:
            code, message = _error_of(response)
            raise SmsRejectedError(response.status_code, code, message)
        found = _json_object(response)
        return SentSms(provider_id=str(found.get("sid", "")), status=str(found.get("status", "")))


def _json_object(response: httpx.Response) -> dict[str, object]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_of(response: httpx.Response) -> tuple[str | None, str]:
    """Twilio's error `code` and `message`; the message says nothing of the number (Twilio's
    texts name it, so only the code and the status are kept when a message names a `+`)."""
    data = _json_object(response)
    code = data.get("code")
    message = str(data.get("message") or response.reason_phrase)
    if "+" in message:
        message = "(message withheld: it names the number)"
    return (str(code) if code is not None else None), message
