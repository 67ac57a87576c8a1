"""Tracing is off unless the standard OpenTelemetry variables turn it on."""

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from telemetry import tracing
from telemetry.tracing import TracingConfig
from workers.settings import Settings

OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture(autouse=True)
def _no_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_without_the_variables_nothing_is_installed() -> None:
    config = Settings().tracing_config()
    assert not config.enabled
    installed = tracing.install(config, "worker")
    assert installed is tracing.OFF and tracing.current() is tracing.OFF
    assert installed.client_interceptors() == []
    assert installed.provider is None  # api/app.py adds no middleware then
    assert isinstance(installed.tracer, trace.NoOpTracer)
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


def test_an_endpoint_turns_it_on_and_names_the_traces_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "recovery-eu")
    config = Settings().tracing_config()
    assert config == TracingConfig(
        otlp_endpoint="http://collector:4318/", service_name="recovery-eu"
    )
    assert config.enabled
    assert config.traces_url == "http://collector:4318/v1/traces"


def test_the_traces_endpoint_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces.example/otlp")
    config = Settings().tracing_config()
    assert config.enabled and config.traces_url == "https://traces.example/otlp"


def test_sdk_disabled_wins_over_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not Settings().tracing_config().enabled
