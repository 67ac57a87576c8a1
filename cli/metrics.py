"""The long-running commands' metrics listener: started before anything connects to Temporal."""

from cli.support import SetupError, require_free_port
from workers.metrics_runtime import MetricsListenerError, start_metrics

WORKER_METRICS_SETTING = "CHECKOUT_RECOVERY_WORKER_METRICS_ADDRESS"
API_METRICS_SETTING = "CHECKOUT_RECOVERY_API_METRICS_ADDRESS"


def serve_metrics(address: str, setting: str) -> None:
    """Serve Prometheus metrics on `address` (empty: none); a SetupError names the address and
    `setting` (the variable that sets it) when the port is taken."""
    if not address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise SetupError(f"{setting}: no port in the metrics address {address!r}")
    require_free_port(f"the metrics listener ({setting})", host or "0.0.0.0", int(port))
    try:
        start_metrics(address)
    except MetricsListenerError as err:
        raise SetupError(f"{err} ({setting})") from None
