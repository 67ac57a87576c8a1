"""Tracing: one report is one trace, from the API request to the step's SMTP send, on the dev
server with a real worker, API and SMTP server (in this process, then as the `api` and `worker`
processes exporting over OTLP/HTTP); and no span names the buyer."""

import contextlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain.flow import WORKFLOW_NAME
from domain.steps import SEND_EMAIL
from telemetry.tracing import SMTP_SPAN, Tracing, tracing_to
from tests.api.stack import BASE, FAST_POLICY, Stack
from tests.e2e.processes import running_stack, timed_smtp_server
from tests.ports import free_port
from tests.support import SmtpServer, eventually, sample_checkout_data

REQUEST_SPAN = f"POST {BASE}"
START_SPAN = f"StartWorkflow:{WORKFLOW_NAME}"
ACTIVITY_SPAN = f"RunActivity:{SEND_EMAIL}"
CALLER_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PROCESS_POLICY = """
name = "traced"
listen_window = "1h"
[[steps]]
delay = "1s"
action = "email"
template = "reminder"
"""


def _buyer() -> tuple[dict[str, Any], list[str]]:
    """A report of a buyer whose details are unique words, and those words (the PII)."""
    tag = uuid.uuid4().hex[:10]
    email = f"trace-{tag}@example.com"
    first, last = f"Zenobia{tag}", f"Quillfeather{tag}"
    body = sample_checkout_data(
        buyerInfo={"email": email, "visitorId": f"v-{tag}"},
        contactDetails={"firstName": first, "lastName": last, "phone": f"+4930{tag[:6]}"},
    )
    return body, [email, first, last]


def _traced_client(env: WorkflowEnvironment, tracing: Tracing) -> Client:
    """The dev server's client again, with the tracing interceptor as `connect` adds it."""
    config = env.client.config()
    config["interceptors"] = tracing.client_interceptors()
    return Client(**config)


def _texts(span: ReadableSpan) -> Iterator[str]:
    """Every piece of text a span exports: its name, attribute values, events, status."""
    yield span.name
    for attributes in [span.attributes, span.resource.attributes] + [
        event.attributes for event in span.events
    ]:
        for value in (attributes or {}).values():
            yield from (str(v) for v in value) if isinstance(value, tuple) else (str(value),)
    for event in span.events:
        yield event.name
    if span.status.description:
        yield span.status.description


def _leaks(spans: Sequence[ReadableSpan], secrets: list[str]) -> list[tuple[str, str]]:
    return [
        (span.name, secret)
        for span in spans
        for text in _texts(span)
        for secret in secrets
        if secret.lower() in text.lower()
    ]


def _named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def _finished(exporter: InMemorySpanExporter, name: str) -> Sequence[ReadableSpan]:
    async def probe() -> Sequence[ReadableSpan] | None:
        spans = exporter.get_finished_spans()
        return spans if _named(spans, name) else None

    return await eventually(probe, what=f"a finished {name} span")


async def test_one_report_is_one_trace_from_the_request_to_the_smtp_send(
    dev_server_env: WorkflowEnvironment, smtp: SmtpServer, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    body, pii = _buyer()
    with tracing_to(exporter) as tracing:
        client = _traced_client(dev_server_env, tracing)
        async with Stack.running(
            client, smtp=smtp, data_dir=tmp_path, policy=FAST_POLICY, serve=True
        ) as stack:
            # The shop's service calls us inside a trace of its own: the report continues it.
            caller = {"traceparent": f"00-{CALLER_TRACE:032x}-00f067aa0ba902b7-01"}
            report = await stack.http.post(
                BASE, json=body, headers={**stack.as_manager(), **caller}
            )
            assert report.status_code == 201, report.text
            spans = await _finished(exporter, SMTP_SPAN)
            spans = await _finished(exporter, ACTIVITY_SPAN)
            secrets = [*pii, stack.manage_key, stack.read_key]
    assert len(smtp.handler.messages) == 1

    (request,) = _named(spans, REQUEST_SPAN)
    (start,) = _named(spans, START_SPAN)
    (step,) = _named(spans, ACTIVITY_SPAN)
    (send,) = _named(spans, SMTP_SPAN)
    assert request.kind is SpanKind.SERVER
    assert request.attributes is not None and request.attributes.get("http.status_code") == 201
    trace_id = request.context.trace_id
    assert trace_id == CALLER_TRACE
    by_id = {span.context.span_id: span for span in spans}

    def ancestors(span: ReadableSpan) -> list[str]:
        names = []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            names.append(span.name)
        return names

    # One trace: the start inside the request, the activity under the flow the start began,
    # and the SMTP transaction inside the activity.
    assert {span.context.trace_id for span in (start, step, send)} == {trace_id}
    assert REQUEST_SPAN in ancestors(start)
    assert START_SPAN in ancestors(step) and REQUEST_SPAN in ancestors(step)
    assert send.parent is not None and send.parent.span_id == step.context.span_id
    assert send.kind is SpanKind.CLIENT
    assert send.attributes == {
        "server.address": "127.0.0.1",
        "server.port": smtp.port,
        "network.protocol.name": "smtp",
    }
    assert send.status.status_code is StatusCode.UNSET

    assert _leaks(spans, secrets) == []


async def test_a_refused_recipient_leaves_no_address_in_any_span(
    dev_server_env: WorkflowEnvironment, smtp: SmtpServer, tmp_path: Path
) -> None:
    """The relay's refusal quotes the recipient, and the SDK records the activity's failure
    (message, traceback with its cause) in its span: the exporter masks it."""
    exporter = InMemorySpanExporter()
    body, pii = _buyer()
    smtp.handler.rejected_recipients.add(pii[0])
    with tracing_to(exporter) as tracing:
        client = _traced_client(dev_server_env, tracing)
        async with Stack.running(
            client, smtp=smtp, data_dir=tmp_path, policy=FAST_POLICY, serve=True
        ) as stack:
            report = await stack.http.post(BASE, json=body, headers=stack.as_manager())
            assert report.status_code == 201, report.text
            spans = await _finished(exporter, ACTIVITY_SPAN)

    (send,) = _named(spans, SMTP_SPAN)
    assert send.status.status_code is StatusCode.ERROR
    assert send.attributes is not None
    assert send.attributes["smtp.response.code"] == 550
    assert send.attributes["error.type"] == "SMTPRecipientsRefused"
    (step,) = _named(spans, ACTIVITY_SPAN)
    # The SDK did record the failure, with its cause, and what it says is masked.
    recorded = " ".join(_texts(step))
    assert "SMTPRecipientsRefused" in recorded and "<email>" in recorded, recorded
    assert _leaks(spans, pii) == []


# --- the processes, exporting over OTLP/HTTP -------------------------------------------------


@dataclass
class _Collector:
    """A real OTLP/HTTP receiver on loopback (a collector is outside the project)."""

    port: int
    requests: list[tuple[str, ExportTraceServiceRequest]] = field(default_factory=list)

    def spans(self) -> list[tuple[str, str, bytes]]:
        """(process, span name, trace id) of every span received."""
        found = []
        for _, request in self.requests:
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        found.append(
                            (
                                attributes.get("checkout_recovery.process", ""),
                                span.name,
                                span.trace_id,
                            )
                        )
        return found


@contextlib.contextmanager
def _collector() -> Iterator[_Collector]:
    collector = _Collector(free_port())

    class Receive(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            collector.requests.append((self.path, request))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", collector.port), Receive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        server.shutdown()
        server.server_close()


async def test_the_api_and_worker_processes_export_one_trace_over_otlp(tmp_path: Path) -> None:
    body, pii = _buyer()
    with _collector() as collector, timed_smtp_server() as smtp:
        async with running_stack(
            tmp_path,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
            policy_toml=PROCESS_POLICY,
            smtp=smtp,
            extra_env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
                "OTEL_SERVICE_NAME": "recovery-under-test",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            },
        ) as stack:
            async with stack.http() as http:
                report = await http.post(BASE, json=body)
                assert report.status_code == 201, report.text

            async def exported() -> list[tuple[str, str, bytes]] | None:
                spans = collector.spans()
                names = {(process, name) for process, name, _ in spans}
                wanted = {("api", REQUEST_SPAN), ("api", START_SPAN), ("worker", SMTP_SPAN)}
                return spans if wanted <= names else None

            spans = await eventually(exported, timeout=60, what="the spans of both processes")
            secrets = [*pii, stack.api_key]

    assert {path for path, _ in collector.requests} == {"/v1/traces"}
    by_name = {name: trace_id for _, name, trace_id in spans}
    assert by_name[REQUEST_SPAN] == by_name[START_SPAN] == by_name[SMTP_SPAN]
    assert by_name[ACTIVITY_SPAN] == by_name[REQUEST_SPAN]
    exported_text = b"".join(request.SerializeToString() for _, request in collector.requests)
    assert b"recovery-under-test" in exported_text
    assert [s for s in secrets if s.encode() in exported_text] == []
