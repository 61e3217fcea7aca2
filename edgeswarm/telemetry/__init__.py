"""Observability shared by every process: structured logs, metrics, health, latency histograms."""

from .endpoint import DaemonEndpoint, MetricsEndpointError, Probes
from .latency import LatencyHistogram
from .logs import LOG_LEVELS, configure_logging
from .metrics import daemon_registry

__all__ = [
    "LOG_LEVELS",
    "DaemonEndpoint",
    "LatencyHistogram",
    "MetricsEndpointError",
    "Probes",
    "configure_logging",
    "daemon_registry",
]
