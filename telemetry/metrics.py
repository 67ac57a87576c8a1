"""The engine's own metrics: each one declared once here, recorded through small typed calls.

They are made from the Temporal SDK's metric meter (`temporalio.runtime.Runtime.metric_meter`), so
they appear on the same Prometheus listener as the SDK's runtime metrics: one scrape target per
process, one exposition format, one set of bucket settings. The process that owns a runtime with
a Prometheus listener calls `install` with its meter (workers/metrics_runtime.py); until then,
and in tests and the CLI, every call here records into the SDK's no-op meter.

Label values come from fixed, small vocabularies only: outcomes, `NotSentReason` values, step
numbers and template names of the policy, attributions, route templates, status classes. Nothing
here ever takes a checkout id, an address, a name or a raw path, so no buyer data can become a
label (and the number of series stays bounded).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from temporalio.common import (
    MetricCounter,
    MetricGauge,
    MetricGaugeFloat,
    MetricHistogramFloat,
    MetricMeter,
)

from domain.activity import NotSentReason

PREFIX = "checkout_recovery_"


class Kind(StrEnum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    GAUGE = "gauge"


@dataclass(frozen=True)
class Metric:
    """One metric as Prometheus shows it (counters get the `_total` suffix when exported)."""

    name: str
    kind: Kind
    description: str
    labels: tuple[str, ...] = ()
    unit: str | None = None
    buckets: tuple[float, ...] = ()
    """Histogram bucket boundaries, handed to the SDK's Prometheus exporter."""

    @property
    def exported_name(self) -> str:
        return f"{self.name}_total" if self.kind is Kind.COUNTER else self.name


REPORTS = Metric(
    f"{PREFIX}reports",
    Kind.COUNTER,
    "Abandoned-checkout reports: new (a flow starts), repeated (already known), refused.",
    ("outcome", "reason"),
)
EMAILS_SENT = Metric(
    f"{PREFIX}emails_sent",
    Kind.COUNTER,
    "Recovery emails the SMTP relay accepted.",
    ("step", "template"),
)
EMAILS_NOT_SENT = Metric(
    f"{PREFIX}emails_not_sent",
    Kind.COUNTER,
    "Email steps that ended without sending (EMAIL_NOT_SENT), by reason.",
    ("step", "reason"),
)
NOTIFICATIONS = Metric(
    f"{PREFIX}notifications",
    Kind.COUNTER,
    "Staff notification steps: sent, or not_sent with the reason.",
    ("outcome", "reason"),
)
TASKS = Metric(
    f"{PREFIX}tasks",
    Kind.COUNTER,
    "Staff task steps: created, or not_created with the reason.",
    ("outcome", "reason"),
)
RECOVERIES = Metric(
    f"{PREFIX}recoveries",
    Kind.COUNTER,
    "Checkouts marked recovered, by attribution (link, assisted, organic).",
    ("attribution",),
)
UNSUBSCRIBES = Metric(
    f"{PREFIX}unsubscribes",
    Kind.COUNTER,
    "Buyers who asked for no more recovery email.",
)
WEBHOOK_DELIVERIES = Metric(
    f"{PREFIX}webhook_deliveries",
    Kind.COUNTER,
    "Event deliveries to subscribers: delivered, refused (by status class), unreachable, dropped.",
    ("outcome", "status_class"),
)
HANDOFF_BACKLOG = Metric(
    f"{PREFIX}handoff_backlog_commands",
    Kind.GAUGE,
    "Commands in the store not yet confirmed by Temporal.",
)
HANDOFF_OLDEST_AGE = Metric(
    f"{PREFIX}handoff_oldest_command_age_seconds",
    Kind.GAUGE,
    "Age of the oldest command not yet confirmed by Temporal (0 when none waits).",
    unit="s",
)
SEND_LATENESS = Metric(
    f"{PREFIX}email_send_lateness_seconds",
    Kind.HISTOGRAM,
    "From the moment the flow ran the email step to the SMTP relay's acceptance.",
    ("step",),
    unit="s",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
)
API_LATENCY = Metric(
    f"{PREFIX}api_request_duration_seconds",
    Kind.HISTOGRAM,
    "HTTP requests to the API, by route template, method and status class.",
    ("route", "method", "status_class"),
    unit="s",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

ALL: tuple[Metric, ...] = (
    REPORTS,
    EMAILS_SENT,
    EMAILS_NOT_SENT,
    NOTIFICATIONS,
    TASKS,
    RECOVERIES,
    UNSUBSCRIBES,
    WEBHOOK_DELIVERIES,
    HANDOFF_BACKLOG,
    HANDOFF_OLDEST_AGE,
    SEND_LATENESS,
    API_LATENCY,
)


def histogram_buckets() -> dict[str, list[float]]:
    """Bucket boundaries per histogram, for `PrometheusConfig.histogram_bucket_overrides`."""
    return {m.name: list(m.buckets) for m in ALL if m.kind is Kind.HISTOGRAM}


ReportOutcome = Literal["new", "repeated", "refused"]
RefusalReason = Literal["", "invalid", "erased"]
WebhookOutcome = Literal["delivered", "refused", "unreachable", "dropped"]


def status_class(status: int | None) -> str:
    """ "2xx", "4xx", ...: a status code's class, the only form a status takes as a label."""
    return f"{status // 100}xx" if status is not None and 100 <= status <= 599 else "none"


def reason_label(reason: str | None) -> str:
    """A NotSentReason value; `condition_failed:min_total,...` keeps only its reason, and
    anything else becomes "other" so that no free text ever becomes a label."""
    if not reason:
        return ""
    head = reason.split(":", 1)[0]
    return head if head in _REASONS else "other"


_REASONS = frozenset(r.value for r in NotSentReason)
_ATTRIBUTIONS = frozenset({"link", "assisted", "organic"})


class EngineMetrics:
    """The instruments of one meter; `install` makes one the process records into."""

    def __init__(self, meter: MetricMeter) -> None:
        self.reports = _counter(meter, REPORTS)
        self.emails_sent = _counter(meter, EMAILS_SENT)
        self.emails_not_sent = _counter(meter, EMAILS_NOT_SENT)
        self.notifications = _counter(meter, NOTIFICATIONS)
        self.tasks = _counter(meter, TASKS)
        self.recoveries = _counter(meter, RECOVERIES)
        self.unsubscribes = _counter(meter, UNSUBSCRIBES)
        self.webhook_deliveries = _counter(meter, WEBHOOK_DELIVERIES)
        self.handoff_backlog: MetricGauge = meter.create_gauge(
            HANDOFF_BACKLOG.name, HANDOFF_BACKLOG.description
        )
        self.handoff_oldest_age: MetricGaugeFloat = meter.create_gauge_float(
            HANDOFF_OLDEST_AGE.name, HANDOFF_OLDEST_AGE.description, HANDOFF_OLDEST_AGE.unit
        )
        self.send_lateness = _histogram(meter, SEND_LATENESS)
        self.api_latency = _histogram(meter, API_LATENCY)


def _counter(meter: MetricMeter, metric: Metric) -> MetricCounter:
    return meter.create_counter(metric.name, metric.description, metric.unit)


def _histogram(meter: MetricMeter, metric: Metric) -> MetricHistogramFloat:
    return meter.create_histogram_float(metric.name, metric.description, metric.unit)


class _Installed:
    """The instruments the module's functions record into (one holder, no `global`)."""

    def __init__(self) -> None:
        self.metrics = EngineMetrics(MetricMeter.noop)


_installed = _Installed()


def install(meter: MetricMeter) -> None:
    """Record into `meter` from now on (once per process, by whoever owns its runtime)."""
    _installed.metrics = EngineMetrics(meter)


def uninstall() -> None:
    """Back to the no-op meter (tests that installed one)."""
    install(MetricMeter.noop)


# --- what the layers record ----------------------------------------------------------------


def report_received(outcome: ReportOutcome, reason: RefusalReason = "") -> None:
    _installed.metrics.reports.add(1, {"outcome": outcome, "reason": reason})


def email_sent(step: int, template: str) -> None:
    """`step`: 1-based, as the activity entries count steps."""
    _installed.metrics.emails_sent.add(1, {"step": str(step), "template": template})


def email_not_sent(step: int, reason: str | None) -> None:
    _installed.metrics.emails_not_sent.add(1, {"step": str(step), "reason": reason_label(reason)})


def notification_step(reason: str | None = None) -> None:
    """A notification step ended: sent (no reason), or not sent for `reason`."""
    outcome = "not_sent" if reason else "sent"
    _installed.metrics.notifications.add(1, {"outcome": outcome, "reason": reason_label(reason)})


def task_step(reason: str | None = None) -> None:
    """A task step ended: created (no reason), or not created for `reason`."""
    outcome = "not_created" if reason else "created"
    _installed.metrics.tasks.add(1, {"outcome": outcome, "reason": reason_label(reason)})


def recovery_recorded(attribution: str) -> None:
    label = attribution if attribution in _ATTRIBUTIONS else "other"
    _installed.metrics.recoveries.add(1, {"attribution": label})


def unsubscribed() -> None:
    _installed.metrics.unsubscribes.add(1)


def webhook_delivery(outcome: WebhookOutcome, status: int | None = None) -> None:
    _installed.metrics.webhook_deliveries.add(
        1, {"outcome": outcome, "status_class": status_class(status)}
    )


def handoff_backlog(count: int, oldest: datetime | None, now: datetime) -> None:
    _installed.metrics.handoff_backlog.set(count)
    age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    _installed.metrics.handoff_oldest_age.set(age)


def send_lateness(step: int, lateness: timedelta) -> None:
    _installed.metrics.send_lateness.record(max(lateness.total_seconds(), 0.0), {"step": str(step)})


def api_request(route: str, method: str, status: int, seconds: float) -> None:
    """`route`: the route's template (`/ecom/v1/abandoned-checkout/{checkout_id}`), never the
    path the caller sent."""
    labels = {"route": route, "method": method, "status_class": status_class(status)}
    _installed.metrics.api_latency.record(seconds, labels)
