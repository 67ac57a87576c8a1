"""Recovery links, unsubscribe links and cursors over HTTP: a value in any spelling but the
engine's own is refused as a forged one is (403, 400), never honoured and never a 500."""

from datetime import UTC, datetime
from urllib.parse import quote

from domain.spelling import encode_base64url
from tests.api.stack import BASE, Stack, checkout_body
from workers.link_secret import link_signer_for


async def test_links_and_cursors_in_another_spelling_are_refused_as_forged(stack: Stack):
    reported = await stack.report(checkout_body())
    assert reported.status_code == 201, reported.text
    checkout_id = reported.json()["abandonedCheckout"]["id"]
    signer = link_signer_for(stack.settings)

    redirect = f"{BASE}/{quote(checkout_id, safe='')}/redirect-to-checkout"
    step, expires, signature = signer.token(checkout_id, 1, datetime.now(UTC)).split(".")
    arabic_indic = "".join(chr(0x0660 + int(c)) for c in expires)
    for token in (
        f"{step}.{arabic_indic}.{signature}",  # the find: it used to redirect
        f"{step}.0{expires}.{signature}",
        f"+{step}.{expires}.{signature}",
        f"{step}.{expires[:3]}_{expires[3:]}.{signature}",
        f"{step}.{expires}.{signature}AAAA",
        f"{step}.{expires}.{signature}==",
        f"{step}.{expires}.{signature[:-1]}é",  # used to be a 500
        f" {step}.{expires}.{signature}",
    ):
        refused = await stack.http.get(redirect, params={"token": token})
        assert refused.status_code == 403, token
        assert refused.json() == {
            "code": "invalid_link",
            "message": "this recovery link is not valid",
        }
    genuine = await stack.http.get(redirect, params={"token": f"{step}.{expires}.{signature}"})
    assert genuine.status_code == 302

    unsubscribe = "/ecom/v1/abandoned-checkout/unsubscribe"
    token = signer.unsubscribe_token(checkout_id)
    assert (await stack.http.get(unsubscribe, params={"token": token})).status_code == 200
    for tampered in (token + "A", token + "=", token[:-1] + "é", token.upper(), token[:-2]):
        refused = await stack.http.get(unsubscribe, params={"token": tampered})
        assert refused.status_code == 400, tampered
        assert "This link is not valid" in refused.text

    # The other find: a hand-made cursor of deeply nested JSON answered 500.
    for payload in (b"[" * 50_000 + b"]" * 50_000, b'{"f":' + b'{"$not":' * 5_000 + b"{}"):
        body = {"query": {"cursorPaging": {"cursor": encode_base64url(payload)}}}
        answer = await stack.http.post(f"{BASE}/query", json=body, headers=stack.as_reader())
        assert answer.status_code == 400
        assert answer.json()["details"] == [
            {
                "field": "query.cursorPaging.cursor",
                "message": "invalid cursor: not one this service gave",
            }
        ]
