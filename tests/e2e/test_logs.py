"""The logs of a full flow, as the API and worker processes write them, in each format: JSON
lines that parse and name the checkout, and no buyer email, name or token in any line."""

import json
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from temporalio.client import WorkflowExecutionStatus

from domain.flow import workflow_id_for
from tests.e2e.processes import Stack, TimedSmtpServer, running_stack, timed_smtp_server
from tests.support import body_text, eventually, sample_checkout_data

REPORT = "/ecom/v1/abandoned-checkout"
POLICY = """
name = "logged"
listen_window = "1h"
[frequency_cap]
window = "0s"
[[steps]]
delay = "1s"
action = "email"
template = "reminder"
"""
JSON_FIELDS = {"time", "level", "logger", "message"}


def _buyer(tag: str) -> tuple[dict[str, Any], list[str]]:
    """A report whose buyer details are unique words, and those words."""
    email = f"logs-{tag}@example.com"
    first, last = f"Philippa{tag}", f"Oddsock{tag}"
    body = sample_checkout_data(
        buyerInfo={"email": email, "visitorId": f"v-{tag}"},
        contactDetails={"firstName": first, "lastName": last},
    )
    return body, [email, first, last]


async def _full_flow(stack: Stack, smtp: TimedSmtpServer) -> tuple[list[str], str]:
    """One buyer gets the email, clicks it and buys; another's address is refused by the relay
    (whose answer quotes it). Returns the secrets and the refused buyer's checkout id."""
    tag = uuid.uuid4().hex[:8]
    good, good_pii = _buyer(f"a{tag}")
    refused, refused_pii = _buyer(f"b{tag}")
    smtp.handler.rejected_recipients.add(refused_pii[0])
    smtp.handler.refuse_data = 1  # the good buyer's first try gets a 451: a retry is logged
    async with stack.http() as http:
        ids = []
        for body in (good, refused):
            answer = await http.post(REPORT, json=body)
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["abandonedCheckout"]["id"])
        good_id, refused_id = ids

        async def arrived() -> bool:
            return bool(smtp.handler.arrivals_for(good_pii[0]))

        await eventually(arrived, timeout=60, what="the recovery email")
        message = smtp.handler.arrivals_for(good_pii[0])[0].message
        link = re.search(
            r"https?://\S+redirect-to-checkout\?token=\S+", body_text(message, "plain")
        )
        assert link, body_text(message, "plain")
        token = parse_qs(urlsplit(link.group(0)).query)["token"][0]
        clicked = await http.get(link.group(0), follow_redirects=False)
        assert clicked.status_code == 302, clicked.text
        recovered = await http.post(
            f"{REPORT}/recover", json={"checkoutId": good["checkoutId"], "orderId": "o-1"}
        )
        assert recovered.status_code == 200, recovered.text

    async def closed_and_refused() -> bool:
        good_flow = await stack.client.get_workflow_handle(workflow_id_for(good_id)).describe()
        async with stack.http() as http:
            entries = (await http.get(f"{REPORT}/{refused_id}/activities")).json()["activities"]
        return good_flow.status is WorkflowExecutionStatus.COMPLETED and any(
            entry["type"] == "EMAIL_NOT_SENT" for entry in entries
        )

    await eventually(closed_and_refused, timeout=60, what="the recovery and the refusal")
    secrets = [*good_pii, *refused_pii, stack.api_key, token]
    return secrets, refused_id


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_a_full_flows_logs_name_checkouts_and_no_buyer(
    tmp_path: Path, log_format: str
) -> None:
    with timed_smtp_server() as smtp:
        async with running_stack(
            tmp_path,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
            policy_toml=POLICY,
            smtp=smtp,
            extra_env={"CHECKOUT_RECOVERY_LOG_FORMAT": log_format},
        ) as stack:
            secrets, refused_id = await _full_flow(stack, smtp)
            lines = [
                line
                for part in (stack.api.process, stack.worker.process)
                for line in part.output().splitlines()
                if line.strip()
            ]

    # The refusal was logged (by the SDK, with the relay's answer in its traceback): the
    # redaction had something to do.
    assert any("SMTPRecipientsRefused" in line for line in lines), "\n".join(lines)
    leaks = [
        (secret, line) for line in lines for secret in secrets if secret.lower() in line.lower()
    ]
    assert leaks == []

    refused_flow = workflow_id_for(refused_id)
    if log_format == "text":
        assert any(refused_flow in line for line in lines)
        return
    records = []
    for line in lines:
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict) and record.keys() >= JSON_FIELDS, line
        records.append(record)
    about_refused = [
        r
        for r in records
        if r.get("checkout_id") == refused_id and r.get("workflow_id") == refused_flow
    ]
    assert about_refused, "\n".join(lines)
    # The SDK's activity failure: its details as fields, its traceback in `exception`.
    failed = [r for r in about_refused if r["message"] == "Completing activity as failed"]
    assert failed and all("exception" in r and r["activity"] for r in failed), failed
    assert all(isinstance(r.get("step", 1), int) for r in records)
