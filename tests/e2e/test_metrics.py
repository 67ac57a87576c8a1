"""Both metrics endpoints after a real flow: the API and the worker as their own processes.

One checkout is reported through the API (plus a repeat and a refused one), its email goes out
over real SMTP, a subscriber gets its events, and the buyer comes back; then both listeners are
scraped as Prometheus would and parsed with prometheus_client's own parser.
"""

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.e2e.processes import Arrival, running_stack, timed_smtp_server
from tests.ports import free_port
from tests.support import eventually, sample_checkout_data

POLICY = """
name = "metrics"
listen_window = "1h"
[frequency_cap]
window = "0s"
[[steps]]
delay = "0s"
action = "email"
template = "reminder"
[[steps]]
delay = "0s"
action = "task"
template = "follow_up"
assignee = "sales"
due_in = "1d"
[[steps]]
delay = "1h"
action = "email"
template = "last_chance"
"""
REPORT = "/ecom/v1/abandoned-checkout"
SUBSCRIPTIONS = "/ecom/v1/abandoned-checkout-subscriptions"


class _Hook(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def webhook_receiver() -> Iterator[str]:
    """A shop's webhook endpoint: a real HTTP server on loopback that answers 204."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


async def scrape(address: str) -> list[Sample]:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://{address}/metrics")).text
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_both_endpoints_show_the_sdk_and_the_engine_after_a_real_flow(
    tmp_path: Path,
) -> None:
    worker_metrics = f"127.0.0.1:{free_port()}"
    api_metrics = f"127.0.0.1:{free_port()}"
    buyer_email = "grace.hopper@example.org"
    data = sample_checkout_data(
        buyerInfo={"email": buyer_email, "visitorId": "visitor-metrics"},
        contactDetails={"firstName": "Grace", "lastName": "Hopper"},
    )
    with timed_smtp_server() as smtp, webhook_receiver() as hook:
        async with (
            running_stack(
                tmp_path,
                database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
                policy_toml=POLICY,
                smtp=smtp,
                extra_env={
                    "CHECKOUT_RECOVERY_WORKER_METRICS_ADDRESS": worker_metrics,
                    "CHECKOUT_RECOVERY_API_METRICS_ADDRESS": api_metrics,
                },
            ) as stack,
            stack.http() as http,
        ):
            made = await http.post(SUBSCRIPTIONS, json={"url": hook, "events": ["*"]})
            assert made.status_code == 201, made.text
            first = await http.post(REPORT, json=data)
            assert first.status_code == 201, first.text
            checkout_id = first.json()["abandonedCheckout"]["id"]
            assert (await http.post(REPORT, json=data)).status_code == 200
            assert (await http.post(REPORT, json={"buyerInfo": 7})).status_code == 400
            assert (await http.get(f"{REPORT}/{checkout_id}")).status_code == 200

            assert await eventually(lambda: _arrived(smtp.handler.arrivals, buyer_email))
            assert await eventually(lambda: _counted(worker_metrics, "tasks_total", 1))
            recovered = await http.post(f"{REPORT}/{checkout_id}/recover", json={})
            assert recovered.status_code == 200, recovered.text
            assert await eventually(lambda: _at_least(_Hook, 2))
            # The gauges are measured every few seconds, the deliveries after the POST.
            assert await eventually(
                lambda: _counted(worker_metrics, "webhook_deliveries_total", 2), timeout=20
            )
            worker = await scrape(worker_metrics)
            api = await scrape(api_metrics)

    # No buyer data and no id in any label of either scrape.
    secrets = [buyer_email, "Grace", "Hopper", checkout_id, data["checkoutId"]]
    labels = {v for s in worker + api for v in s.labels.values()}
    assert [v for v in labels if any(secret in v for secret in secrets)] == []

    # The SDK's own runtime metrics, on the engine's listener (worker and client side).
    assert value(worker, "temporal_worker_task_slots_available") > 0
    assert value(worker, "temporal_request_total") > 0
    assert value(api, "temporal_request_total") > 0

    assert value(api, "checkout_recovery_reports_total", outcome="new") == 1
    assert value(api, "checkout_recovery_reports_total", outcome="repeated") == 1
    assert value(api, "checkout_recovery_reports_total", outcome="refused", reason="invalid") == 1
    assert value(api, "checkout_recovery_recoveries_total", attribution="assisted") == 1
    latency = "checkout_recovery_api_request_duration_seconds_count"
    assert value(api, latency, route=REPORT, method="POST", status_class="2xx") == 2
    assert value(api, latency, route=REPORT, method="POST", status_class="4xx") == 1
    assert value(api, latency, route=f"{REPORT}/{{checkout_id}}", method="GET") == 1

    assert value(worker, "checkout_recovery_emails_sent_total", step="1", template="reminder") == 1
    assert value(worker, "checkout_recovery_email_send_lateness_seconds_count", step="1") == 1
    assert value(worker, "checkout_recovery_email_send_lateness_seconds_sum", step="1") < 60
    assert value(worker, "checkout_recovery_tasks_total", outcome="created") == 1
    delivered = "checkout_recovery_webhook_deliveries_total"
    assert value(worker, delivered, outcome="delivered", status_class="2xx") >= 2
    assert [s for s in worker if s.name == "checkout_recovery_handoff_backlog_commands"]
    assert value(worker, "checkout_recovery_handoff_oldest_command_age_seconds") == 0


async def _arrived(arrivals: list[Arrival], address: str) -> bool:
    return any(a.recipient == address for a in arrivals)


async def _at_least(hook: type[_Hook], count: int) -> bool:
    return hook.received >= count


async def _counted(address: str, metric: str, count: int) -> bool:
    return value(await scrape(address), f"checkout_recovery_{metric}") >= count
