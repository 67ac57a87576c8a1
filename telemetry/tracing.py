"""Traces: one OpenTelemetry trace from an API request through the flow's start to each step's
activity and its SMTP send.

Off by default. The standard OpenTelemetry variables turn it on: OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (OTLP over HTTP), OTEL_SERVICE_NAME, OTEL_SDK_DISABLED; the
exporter itself reads the rest (OTEL_EXPORTER_OTLP_HEADERS, ..._TIMEOUT, ..._CERTIFICATE). When
off, nothing is installed: no tracer provider, no Temporal interceptor, no ASGI middleware, and
the SMTP span is OpenTelemetry's no-op.

A process has one `Tracing`, installed once at start (`install`) and read by the parts that
trace (`current`): the Temporal client (workers/temporal_client.py), the API (api/app.py) and
the SMTP pool. The OpenTelemetry global provider can be set only once per process, so a test
installs a provider of its own with `tracing_to` instead, for the length of a block.

Nothing a span carries names a buyer: the SDK's spans carry workflow and activity ids (hashes of
ours), the request span is shown the path without its query string (signed tokens, dashboard
searches) or the client's address, and every span goes through `RedactingExporter`, which masks
email addresses in whatever text an exception put in a span (an SMTP refusal quotes the
recipient).
"""

import contextlib
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import temporalio.client
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

from telemetry.redaction import mask_emails

TRACER_NAME = "checkout_recovery"
SMTP_SPAN = "smtp.send"
DEFAULT_SERVICE_NAME = "checkout-recovery"

# Only what trace propagation needs reaches the request span: no cookie, no Authorization.
_PROPAGATION_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage", b"host"})
_REAL_SCOPE = "checkout_recovery.real_scope"

# ASGI's types, spelled as the spec (and Starlette) does.
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class TracingConfig:
    """The standard variables' say (workers/settings.py reads them)."""

    otlp_endpoint: str | None = None
    otlp_traces_endpoint: str | None = None
    service_name: str = DEFAULT_SERVICE_NAME
    sdk_disabled: bool = False

    @property
    def enabled(self) -> bool:
        return not self.sdk_disabled and bool(self.otlp_endpoint or self.otlp_traces_endpoint)

    @property
    def traces_url(self) -> str:
        """Where spans go: the traces endpoint as given, else the base endpoint's /v1/traces
        (as the OTLP exporter specification says)."""
        if self.otlp_traces_endpoint:
            return self.otlp_traces_endpoint
        assert self.otlp_endpoint, "tracing is off"
        return f"{self.otlp_endpoint.rstrip('/')}/v1/traces"


class Tracing:
    """A process's tracing: its provider, or None when tracing is off."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self.tracer: trace.Tracer = (
            provider.get_tracer(TRACER_NAME) if provider is not None else trace.NoOpTracer()
        )
        # One interceptor per process: on the client, it is carried to every worker made from it.
        self._interceptor: temporalio.client.Interceptor | None = None
        if provider is not None:
            # Imported only when tracing is on: with the exporter and the ASGI middleware it is
            # several MB of every process's memory (tracing is off by default).
            from temporalio.contrib.opentelemetry import TracingInterceptor  # noqa: PLC0415

            self._interceptor = TracingInterceptor(self.tracer)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def client_interceptors(self) -> list[temporalio.client.Interceptor]:
        """For Client.connect: spans for starts and signals, and (carried to the worker) for
        workflows and activities, with the trace context carried in Temporal headers."""
        return [self._interceptor] if self._interceptor is not None else []

    def shutdown(self) -> None:
        """Send what is still buffered; before the process exits."""
        if self.provider is not None:
            self.provider.shutdown()


OFF = Tracing(None)


@dataclass
class _Process:
    tracing: Tracing


_process = _Process(OFF)


def current() -> Tracing:
    return _process.tracing


def install(config: TracingConfig, role: str) -> Tracing:
    """Set up the process's tracing as the variables say (also as OpenTelemetry's global
    provider, for any library that traces on its own); `role`: which process this is."""
    if not config.enabled:
        _process.tracing = OFF
        return OFF
    resource = Resource.create(
        {SERVICE_NAME: config.service_name, "checkout_recovery.process": role}
    )
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415 (see Tracing)
        OTLPSpanExporter,
    )

    provider.add_span_processor(
        BatchSpanProcessor(RedactingExporter(OTLPSpanExporter(endpoint=config.traces_url)))
    )
    trace.set_tracer_provider(provider)
    _process.tracing = Tracing(provider)
    return _process.tracing


@contextlib.contextmanager
def tracing_to(exporter: SpanExporter) -> Iterator[Tracing]:
    """Within the block, the process traces to `exporter` (each span as it ends, redacted as
    in production); for tests, which cannot set the global provider more than once."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(exporter)))
    before, _process.tracing = _process.tracing, Tracing(provider)
    try:
        yield _process.tracing
    finally:
        _process.tracing = before
        provider.shutdown()


def smtp_send_span(host: str, port: int) -> AbstractContextManager[Span]:
    """The span of one SMTP transaction, a child of the step activity's span.

    It names the relay, never the message: no recipient, no subject. Exceptions are not
    recorded (their text quotes the recipient); `smtp_send_failed` sets what may be known.
    """
    return current().tracer.start_as_current_span(
        SMTP_SPAN,
        kind=SpanKind.CLIENT,
        attributes={"server.address": host, "server.port": port, "network.protocol.name": "smtp"},
        record_exception=False,
        set_status_on_exception=False,
    )


def smtp_send_failed(span: Span, error: BaseException, code: int | None) -> None:
    """Mark the SMTP span failed with the error's type and the relay's reply code only."""
    span.set_attribute("error.type", type(error).__name__)
    if code is not None:
        span.set_attribute("smtp.response.code", code)
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))


class TracedRequests:
    """OpenTelemetry's ASGI middleware, shown a redacted copy of each request's scope.

    It sees the method, the path (email-like text masked) and the trace headers; not the query
    string (recovery and unsubscribe tokens, dashboard searches by email), the client's address,
    or any other header. The app itself gets the real scope.
    """

    def __init__(self, app: ASGIApp, tracer_provider: TracerProvider) -> None:
        from opentelemetry.instrumentation.asgi import (  # noqa: PLC0415 (see Tracing)
            OpenTelemetryMiddleware,
        )

        self._app = app
        self._traced = OpenTelemetryMiddleware(
            self._real,
            tracer_provider=tracer_provider,
            # Its own metrics are not ours to publish (telemetry/metrics has the API's).
            meter_provider=NoOpMeterProvider(),
            exclude_spans=["receive", "send"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path = mask_emails(scope.get("path", ""))
        shown = {
            **scope,
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "client": None,
            "headers": [(k, v) for k, v in scope.get("headers", []) if k in _PROPAGATION_HEADERS],
            _REAL_SCOPE: scope,
        }
        await self._traced(shown, receive, send)

    async def _real(self, shown: Scope, receive: Receive, send: Send) -> None:
        await self._app(shown[_REAL_SCOPE], receive, send)


class RedactingExporter(SpanExporter):
    """Masks email addresses in every span's text (name, attributes, events, status) before
    `inner` sees it: the last line of defence for exception messages the SDK records."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([_redacted(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _redacted(span: ReadableSpan) -> ReadableSpan:
    status = span.status
    if status.description:
        status = Status(status.status_code, mask_emails(status.description))
    return ReadableSpan(
        name=mask_emails(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_masked(span.attributes),
        events=[
            Event(event.name, _masked(event.attributes), event.timestamp) for event in span.events
        ],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _masked(attributes: Attributes) -> dict[str, Any]:
    if not attributes:
        return {}
    return {key: _masked_value(value) for key, value in attributes.items()}


def _masked_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_emails(value)
    if isinstance(value, tuple | list):
        return tuple(mask_emails(v) if isinstance(v, str) else v for v in value)
    return value
