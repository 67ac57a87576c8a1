"""The process's Temporal runtime with a Prometheus listener: the SDK's metrics and ours.

One runtime per process (each runtime starts a thread pool of its own, and a listener binds its
port once), made before the first Temporal client: `connect` hands it to every client, so the
worker's and the client's SDK metrics land on it, and `telemetry.metrics` records the engine's
own metrics into its meter. Processes that start none (the CLI's short commands, tests) use the
SDK's default runtime, with no metrics.
"""

import logging

from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from telemetry import metrics


class _Started:
    """The process's one metrics runtime and its address, once started."""

    runtime: Runtime | None = None
    address: str | None = None


_started = _Started()


class MetricsListenerError(RuntimeError):
    """The metrics listener could not start; the message names the address."""


def start_metrics(address: str) -> Runtime | None:
    """Serve Prometheus metrics on `address` ("host:port"); an empty address serves none.

    Counters end in `_total` and durations are in seconds, as Prometheus conventions ask (the
    SDK's own defaults are neither). Raises MetricsListenerError when the port cannot be bound;
    calling it again with the same address returns the same runtime.
    """
    if not address:
        return None
    if _started.runtime is not None:
        if address != _started.address:
            raise MetricsListenerError(
                f"metrics already served on {_started.address}; one listener per process"
            )
        return _started.runtime
    try:
        runtime = Runtime(
            telemetry=TelemetryConfig(
                # The SDK core's own warnings go through Python logging, so they get the chosen
                # format (one JSON object per line) and the email masking like every other line.
                logging=LoggingConfig(
                    filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                    forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
                ),
                metrics=PrometheusConfig(
                    bind_address=address,
                    counters_total_suffix=True,
                    durations_as_seconds=True,
                    histogram_bucket_overrides=metrics.histogram_buckets(),
                ),
            )
        )
    except ValueError as err:  # the SDK's core reports a bind failure so
        raise MetricsListenerError(f"cannot serve metrics on {address}: {err}") from None
    metrics.install(runtime.metric_meter)
    _started.runtime, _started.address = runtime, address
    return runtime


def metrics_runtime() -> Runtime | None:
    """The runtime `start_metrics` made, for every client this process connects."""
    return _started.runtime
