"""`checkouts ...` and `tasks ...` against a running engine, as an operator runs them."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.checkout import CheckoutStatus
from domain.flow import RecoveryResult, workflow_id_for
from store.sql import SqlStore
from tests.operators.conftest import CliResult, OperatorStack
from tests.support import eventually, sample_checkout


def _json(result: CliResult) -> Any:
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def _entries(store: SqlStore, checkout_id: str, count: int):
    async def probe() -> bool:
        found = await store.get(checkout_id)
        return found is not None and len(found.activities) >= count

    return probe


def _buyer() -> dict[str, str]:
    # One address per checkout: the policy's frequency cap would defer a second checkout's email.
    return {"email": f"ops-{uuid.uuid4().hex[:8]}@example.com", "visitorId": "visitor-1"}


async def test_find_read_and_act_on_checkouts(operators: OperatorStack) -> None:
    stack = operators
    since = datetime.now(UTC).isoformat()
    first = await stack.report(sample_checkout(buyerInfo=_buyer()))
    second = await stack.report(sample_checkout(buyerInfo=_buyer()))
    # Step 1 (email) and step 2 (task) ran for both.
    for checkout_id in (first, second):
        await eventually(_entries(stack.store, checkout_id, 3), what="email and task entries")

    shown = _json(await stack.cli("checkouts", "show", first, "--json"))
    checkout = shown["abandonedCheckout"]
    assert [(a["type"], a.get("step")) for a in checkout["activities"]] == [
        ("SCHEDULED", None),
        ("EMAIL_SENT", 1),
        ("TASK_CREATED", 2),
    ]
    workflow_id = workflow_id_for(first)
    assert shown["workflow"]["status"] == "RUNNING"
    assert shown["workflow"]["link"] == (
        f"http://ui.test:8233/namespaces/default/workflows/{workflow_id}"
    )
    assert shown["policy"] == {"name": "operator-test", "source": "workflow input"}
    upcoming = shown["nextStep"]
    assert (upcoming["step"], upcoming["action"], upcoming["template"]) == (
        3,
        "email",
        "last_chance",
    )
    created = datetime.fromisoformat(checkout["createdDate"])
    assert datetime.fromisoformat(upcoming["dueDate"]) == created + timedelta(hours=1)
    assert upcoming["outcome"] == "send"  # as `policy check` plans it
    # `show ID` is an alias of `checkouts show ID --json`: the same code, the same document.
    alias = _json(await stack.cli("show", first))
    assert alias.keys() == shown.keys()
    assert alias["abandonedCheckout"]["id"] == first and alias["nextStep"] == upcoming

    # Newest first, one per page; the cursor leads to the rest and no further.
    page = _json(await stack.cli("checkouts", "list", "--since", since, "--limit", "1", "--json"))
    assert [c["id"] for c in page["abandonedCheckouts"]] == [second]
    cursor = page["metadata"]["cursors"]["next"]
    rest = _json(await stack.cli("checkouts", "list", "--cursor", cursor, "--json"))
    assert [c["id"] for c in rest["abandonedCheckouts"]] == [first]
    assert "next" not in rest["metadata"]["cursors"]
    readable = await stack.cli("checkouts", "list", "--since", since, "--limit", "1")
    assert readable.code == 0 and second in readable.stdout
    assert f"checkouts list --cursor {cursor}" in readable.stdout
    email = checkout["buyerInfo"]["email"]
    by_email = _json(await stack.cli("checkouts", "list", "--email", email, "--json"))
    assert [c["id"] for c in by_email["abandonedCheckouts"]] == [first]
    none_before = _json(await stack.cli("checkouts", "list", "--until", "1d", "--json"))
    assert none_before["abandonedCheckouts"] == []

    # The task step's to-do: listed while open, gone from the open list once done.
    open_tasks = _json(await stack.cli("tasks", "list", "--json"))["tasks"]
    task = next(t for t in open_tasks if t["checkoutId"] == first)
    assert (task["assignee"], task["status"]) == ("sales", "OPEN")
    done = _json(await stack.cli("tasks", "done", str(task["id"]), "--json"))
    assert done["task"]["status"] == "DONE"
    still_open = _json(await stack.cli("tasks", "list", "--json"))["tasks"]
    assert task["id"] not in [t["id"] for t in still_open]
    every = _json(await stack.cli("tasks", "list", "--all", "--json"))["tasks"]
    assert {t["id"]: t["status"] for t in every}[task["id"]] == "DONE"

    recovered = _json(
        await stack.cli("checkouts", "recover", first, "--order-id", "order-7", "--json")
    )
    assert recovered["abandonedCheckout"]["status"] == CheckoutStatus.RECOVERED
    assert recovered["abandonedCheckout"]["orderId"] == "order-7"
    cancelled = _json(await stack.cli("checkouts", "cancel", second, "--json"))
    assert cancelled == {"id": second, "workflowId": workflow_id_for(second), "cancelSent": True}
    results = [
        await stack.client.get_workflow_handle(
            workflow_id_for(checkout_id), result_type=RecoveryResult
        ).result()
        for checkout_id in (first, second)
    ]
    assert [r.closed_because for r in results] == ["recovered", "cancelled"]

    after = _json(await stack.cli("checkouts", "show", first, "--json"))
    assert after["workflow"]["status"] == "COMPLETED"
    assert after["workflow"]["closeTime"] is not None
    assert after["nextStep"] is None
    recovered_list = _json(
        await stack.cli("checkouts", "list", "--since", since, "--status", "recovered", "--json")
    )
    assert [c["id"] for c in recovered_list["abandonedCheckouts"]] == [first]

    history = _json(await stack.cli("checkouts", "history", first, "--json"))
    assert history["workflowId"] == workflow_id
    rows = [(e["event"], e["name"]) for e in history["events"]]
    assert rows[0] == ("workflow started", "AbandonedCheckoutWorkflow")
    assert rows[-1] == ("workflow completed", "")
    assert [event for event, _ in rows].count("timer fired") >= 2
    assert ("activity scheduled", "send_recovery_email") in rows
    assert ("activity scheduled", "create_staff_task") in rows
    assert rows.index(("signal received", "recovered")) < rows.index(
        ("activity scheduled", "record_recovery")
    )
    # Payloads (the checkout, the order id) never appear.
    assert email not in json.dumps(history) and "order-7" not in json.dumps(history)


async def test_history_shows_retries_and_failures_with_their_errors(
    operators: OperatorStack,
) -> None:
    stack = operators
    refused = _buyer()
    stack.smtp.handler.rejected_recipients.add(refused["email"])
    stack.smtp.handler.refuse_data = 1  # the first DATA gets a 451; Temporal retries
    retried = await stack.report(sample_checkout(buyerInfo=_buyer()))
    failed = await stack.report(sample_checkout(buyerInfo=refused))
    for checkout_id in (retried, failed):
        await eventually(_entries(stack.store, checkout_id, 2), what="the email step's entry")

    retry_rows = _json(await stack.cli("checkouts", "history", retried, "--json"))["events"]
    retry = next(e for e in retry_rows if e["event"] == "activity retried")
    assert (retry["name"], retry["attempt"]) == ("send_recovery_email", 2)
    assert "451" in retry["error"]
    completed = next(e for e in retry_rows if e["event"] == "activity completed")
    assert (completed["name"], completed["attempt"]) == ("send_recovery_email", 2)

    failure_rows = _json(await stack.cli("checkouts", "history", failed, "--json"))["events"]
    failure = next(e for e in failure_rows if e["event"] == "activity failed")
    assert failure["name"] == "send_recovery_email"
    # The error, then its cause as the SMTP library raised it.
    assert failure["error"].startswith(
        "PermanentEmailFailure: recipient refused with [550] <- SMTPRecipientsRefused: "
    )
    assert failure["detail"].endswith("(not retryable)")
    readable = await stack.cli("checkouts", "history", failed)
    assert readable.code == 0
    assert "recipient refused with [550]" in readable.stdout

    shown = _json(await stack.cli("checkouts", "show", failed, "--json"))
    entries = shown["abandonedCheckout"]["activities"]
    assert (entries[1]["type"], entries[1]["reason"]) == ("EMAIL_NOT_SENT", "invalid_address")
    timeline = await stack.cli("checkouts", "show", failed)
    assert timeline.code == 0
    assert "EMAIL_NOT_SENT" in timeline.stdout and "invalid_address" in timeline.stdout
    assert shown["workflow"]["link"] in timeline.stdout
    for checkout_id in (retried, failed):
        await stack.service.cancel(checkout_id)


async def test_unknown_ids_and_bad_options_fail_clearly(operators: OperatorStack) -> None:
    stack = operators
    for command in ("show", "history", "recover", "cancel"):
        result = await stack.cli("checkouts", command, "no-such-checkout", "--json")
        assert (result.code, result.stdout) == (3, ""), command
        assert "error: no abandoned checkout with id 'no-such-checkout'" in result.stderr
    # The top-level commands keep their behaviour.
    legacy = await stack.run_process("recover", "no-such-checkout")
    assert legacy.code == 3 and "no abandoned checkout with id" in legacy.stderr

    missing_task = await stack.cli("tasks", "done", "999999")
    assert missing_task.code == 3 and "error: no task with id 999999" in missing_task.stderr
    bad_since = await stack.cli("checkouts", "list", "--since", "last tuesday")
    assert bad_since.code == 2
    assert "--since: 'last tuesday' is neither a duration back from now" in bad_since.stderr
    cursor_and_filter = await stack.cli(
        "checkouts", "list", "--cursor", "abc", "--status", "abandoned"
    )
    assert cursor_and_filter.code == 2 and "--cursor: give it alone" in cursor_and_filter.stderr
    bad_cursor = await stack.cli("checkouts", "list", "--cursor", "abc")
    assert bad_cursor.code == 2 and "invalid cursor" in bad_cursor.stderr
