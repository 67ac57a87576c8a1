"""End to end on the real Temporal dev server, the demo policy and a real SMTP server on loopback.

The CLI is driven as a user would drive it: as a separate process with environment settings.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from activities.email_message import message_id_for
from domain.activity import ActivityType
from domain.checkout import AbandonedCheckout, CheckoutStatus, FlowState
from domain.flow import RecoveryResult, step_key, workflow_id_for
from store.sql import SqlStore
from tests.support import REPO, SmtpServer, body_text, engine_settings, eventually, running_engine
from workers.policy_files import load_policy

CLI = str(Path(sys.executable).parent / "checkout-recovery")
POLICY = "CHECKOUT_RECOVERY_POLICY"


def _cli(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60, cwd=REPO
    )


def _cli_env(temporal: WorkflowEnvironment, tmp_path: Path, task_queue: str) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": "default",
        "CHECKOUT_RECOVERY_DATA_DIR": str(tmp_path),
        "CHECKOUT_RECOVERY_TASK_QUEUE": task_queue,
    }


async def test_demo_policy_email_arrives_and_store_matches_the_flow(
    dev_server_env: WorkflowEnvironment, smtp: SmtpServer, tmp_path: Path
) -> None:
    settings = engine_settings(smtp.port, data_dir=tmp_path, policy="demo")
    store = SqlStore.from_url(settings.store_url)
    await store.create_schema()
    # The CLI's own configuration names another policy: the checkout still gets the running
    # engine's (its worker published demo as it started).
    env = {**_cli_env(dev_server_env, tmp_path, settings.task_queue), POLICY: "default"}
    try:
        async with running_engine(dev_server_env.client, store, settings):
            started = _cli(env, "start", "examples/checkout.json")
            assert started.returncode == 0, started.stderr
            assert "policy: demo (the running engine's, published at" in started.stderr
            checkout_id = started.stdout.strip()
            workflow_id = workflow_id_for(checkout_id)

            message = await eventually(
                _first_message(smtp), timeout=40, what="the first recovery email"
            )
            await eventually(_entry_count(store, checkout_id, 2), what="the EMAIL_SENT entry")
            handle = dev_server_env.client.get_workflow_handle(
                workflow_id, result_type=RecoveryResult
            )
            live = await handle.query("checkout", result_type=AbandonedCheckout)
            stored = await store.get(checkout_id)

            recovered = _cli(env, "recover", checkout_id, "--order-id", "order-9")
            assert recovered.returncode == 0, recovered.stderr
            result = await handle.result()
            shown = _cli(env, "show", checkout_id)
            missing = _cli(env, "show", "no-such-checkout")
    finally:
        await store.close()

    assert message["Subject"] == "Ada, you left something in your cart at Test Shop"
    assert message["To"] == "Ada Lovelace <ada@example.com>"
    assert message["Message-ID"] == message_id_for(step_key(workflow_id, 0), "shop.test")
    html = body_text(message, "html")
    # The buyer comes back through the signed redirect, which leads on to the shop's checkout URL.
    link = f'href="{settings.public_url}/ecom/v1/abandoned-checkout/{checkout_id}/redirect-to-checkout?token=1.'
    assert link in html
    assert "Linen shirt" in html and "€89.90" in html
    assert "/redirect-to-checkout?token=1." in body_text(message, "plain")

    assert stored is not None
    # The flow holds the checkout as the store does, except the hand-off's state, which only the
    # store knows: Temporal confirmed the start.
    assert stored.flow_state is FlowState.STARTED
    assert stored.model_copy(update={"flow_state": None}).to_json_dict() == live.to_json_dict()
    assert [a.type for a in stored.activities] == [ActivityType.SCHEDULED, ActivityType.EMAIL_SENT]

    assert result.closed_because == "recovered"
    assert result.steps_run == 1
    assert len(smtp.handler.messages) == 1
    assert shown.returncode == 0
    record = json.loads(shown.stdout)["abandonedCheckout"]
    assert record["status"] == CheckoutStatus.RECOVERED
    assert record["orderId"] == "order-9"
    assert [a["type"] for a in record["activities"]] == ["SCHEDULED", "EMAIL_SENT"]
    assert missing.returncode == 3
    assert "no abandoned checkout with id 'no-such-checkout'" in missing.stderr


async def test_policy_on_start_overrides_the_running_engines_and_says_so(
    dev_server_env: WorkflowEnvironment, smtp: SmtpServer, tmp_path: Path
) -> None:
    settings = engine_settings(smtp.port, data_dir=tmp_path, policy="demo")
    store = SqlStore.from_url(settings.store_url)
    await store.create_schema()
    env = _cli_env(dev_server_env, tmp_path, settings.task_queue)
    try:
        async with running_engine(dev_server_env.client, store, settings):
            started = _cli(env, "start", "-", "--policy", "default", stdin=_example("override"))
            assert started.returncode == 0, started.stderr
            shown = _cli(env, "show", started.stdout.strip())
    finally:
        await store.close()
    assert "policy: default (--policy override)" in started.stderr
    assert json.loads(shown.stdout)["policy"]["name"] == "default"


async def test_before_any_worker_started_start_uses_its_own_configuration(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    env = {**_cli_env(dev_server_env, tmp_path, "no-worker-yet"), POLICY: "demo"}
    started = _cli(env, "start", "-", stdin=_example("no-worker"))
    assert started.returncode == 0, started.stderr
    assert "policy: demo (this command's configuration: no worker has started yet)" in (
        started.stderr
    )


def _example(name: str) -> str:
    """The example checkout under a checkoutId of its own: the dev server is the session's, and
    a flow of the same checkout from another test would answer in its place."""
    report = json.loads((REPO / "examples" / "checkout.json").read_text())
    report["checkoutId"] = f"{report['checkoutId']}-{name}"
    report.pop("cartId", None)
    return json.dumps(report)


def _first_message(smtp: SmtpServer):
    async def probe():
        return smtp.handler.messages[0] if smtp.handler.messages else None

    return probe


def _entry_count(store: SqlStore, checkout_id: str, count: int):
    async def probe() -> bool:
        found = await store.get(checkout_id)
        return found is not None and len(found.activities) >= count

    return probe


def test_cli_refuses_bad_input_naming_the_field(tmp_path: Path) -> None:
    bad = json.loads((REPO / "examples" / "checkout.json").read_text())
    bad["currency"] = "EURO"
    del bad["buyerInfo"]["visitorId"]
    env = {**os.environ, "CHECKOUT_RECOVERY_DATA_DIR": str(tmp_path)}
    result = _cli(env, "start", "-", stdin=json.dumps(bad))
    assert result.returncode == 2
    assert "currency: 'EURO' is not an ISO 4217 currency code" in result.stderr
    assert "buyerInfo: needs exactly one of visitorId, memberId, userId" in result.stderr
    not_json = _cli(env, "start", "-", stdin="{oops")
    assert not_json.returncode == 2 and "is not JSON" in not_json.stderr


def test_cli_refuses_a_bad_policy_naming_step_and_field(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('name = "p"\n[[steps]]\ndelay = "1h"\naction = "email"\ntemplate = "nope"\n')
    env = {**os.environ, "CHECKOUT_RECOVERY_DATA_DIR": str(tmp_path)}
    result = _cli(env, "worker", "--policy", str(policy))
    assert result.returncode == 2
    assert (
        "step 1 (email): template: 'nope' lacks subject.txt, body.html, body.txt" in result.stderr
    )
    assert load_policy("demo").name == "demo"
