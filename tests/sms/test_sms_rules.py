"""The pure SMS rules: numbers, consent, length, replies, the provider's signature; and the
Twilio client against a real local server."""

import httpx
import pytest
from pydantic import SecretStr

from activities.sms_provider import SmsRejectedError, SmsUnavailableError, TwilioSms
from domain.activity import NotSentReason
from domain.sms import (
    InboundCommand,
    SmsEncoding,
    SmsProviderConfig,
    e164,
    inbound_command,
    sms_length,
    sms_refusal,
    twilio_signature,
)
from tests.sms.twilio_server import FROM, SID, TOKEN, twilio_server
from tests.support import sample_checkout


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("+49 30 1234-5678", "+493012345678"),
        ("+1 (415) 555.0100", "+14155550100"),
        ("+4412345678", "+4412345678"),  # 10 digits
        ("030 1234 5678", None),  # no country code
        ("+49 30 CALL-NOW", None),
        ("+1234567", None),  # 7 digits: too short
        ("+1234567890123456", None),  # 16 digits: too long
        ("+0123456789", None),
    ],
)
def test_numbers_are_taken_only_in_e164(given: str, expected: str | None) -> None:
    assert e164(given) == expected


def test_consent_and_number_decide_whether_a_buyer_may_be_texted() -> None:
    phone = {"firstName": "Ada", "phone": "+49 30 1234 5678"}
    assert sms_refusal(sample_checkout(contactDetails=phone)) is NotSentReason.NO_SMS_CONSENT
    refused = sample_checkout(contactDetails=phone, smsConsent=False)
    assert sms_refusal(refused) is NotSentReason.NO_SMS_CONSENT
    assert sms_refusal(sample_checkout(smsConsent=True)) is NotSentReason.NO_PHONE
    bad = sample_checkout(contactDetails={"phone": "0301234"}, smsConsent=True)
    assert sms_refusal(bad) is NotSentReason.INVALID_PHONE
    assert sms_refusal(sample_checkout(contactDetails=phone, smsConsent=True)) is None


def test_gsm_texts_split_at_160_then_153_and_others_at_70_then_67() -> None:
    assert sms_length("a" * 160).segments == 1
    assert sms_length("a" * 161).segments == 2
    assert sms_length("a" * 306).segments == 2
    assert sms_length("a" * 307).segments == 3
    euro = sms_length("€" * 80)  # an extension character costs two septets
    assert (euro.encoding, euro.characters, euro.segments) == (SmsEncoding.GSM_7, 160, 1)
    ucs = sms_length("Привет" + "a" * 64)
    assert (ucs.encoding, ucs.characters, ucs.segments) == (SmsEncoding.UCS_2, 70, 1)
    assert sms_length("Привет" + "a" * 65).segments == 2
    assert sms_length("ж" * 134).segments == 2 and sms_length("ж" * 135).segments == 3
    assert sms_length("🛒").characters == 2  # UTF-16: a surrogate pair
    assert sms_length("a" * 153 * 10).too_long is False
    assert sms_length("a" * (153 * 10 + 1)).too_long is True


@pytest.mark.parametrize(
    ("body", "command"),
    [
        ("STOP", InboundCommand.STOP),
        ("  stop \n", InboundCommand.STOP),
        ("Unsubscribe", InboundCommand.STOP),
        ("stopall", InboundCommand.STOP),
        ("cancel", InboundCommand.STOP),
        ("END", InboundCommand.STOP),
        ("quit", InboundCommand.STOP),
        ("start", InboundCommand.START),
        ("UNSTOP", InboundCommand.START),
        ("please stop", None),
        ("thanks!", None),
    ],
)
def test_replies_are_read_as_the_carriers_keywords(
    body: str, command: InboundCommand | None
) -> None:
    assert inbound_command(body) == command


def test_the_signature_matches_twilios_published_vectors() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    repeated = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    assert twilio_signature("12345", url, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    assert twilio_signature("12346", url, params) != "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def _config(base_url: str) -> SmsProviderConfig:
    return SmsProviderConfig(base_url, SID, SecretStr(TOKEN), FROM)


async def test_the_client_posts_twilios_form_with_basic_auth_and_reads_its_answers() -> None:
    with twilio_server() as server:
        async with httpx.AsyncClient() as http:
            client = TwilioSms(http, _config(server.base_url))
            sent = await client.send("+493012345678", "Hello")
            assert sent.status == "queued" and sent.provider_id.startswith("SM")
            [request] = server.received
            assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
            assert request.auth == (SID, TOKEN)
            assert {k: request.form[k] for k in ("To", "From", "Body")} == {
                "To": "+493012345678",
                "From": FROM,
                "Body": "Hello",
            }
            server.answers.append((400, {"code": 21211, "message": "Invalid 'To' Phone Number"}))
            with pytest.raises(SmsRejectedError) as rejected:
                await client.send("+493012345678", "Hello")
            assert rejected.value.code == "21211"
            server.answers.append((503, {"code": 20503, "message": "Service unavailable"}))
            with pytest.raises(SmsUnavailableError):
                await client.send("+493012345678", "Hello")
    async with httpx.AsyncClient() as http:
        gone = TwilioSms(http, _config(server.base_url))  # the server is closed now
        with pytest.raises(SmsUnavailableError):
            await gone.send("+493012345678", "Hello")
