"""Observability shared by every process: structured logs, metrics, latency histograms."""

from .latency import LatencyHistogram
from .logs import configure_logging
from .metrics import start_metrics_server

__all__ = ["LatencyHistogram", "configure_logging", "start_metrics_server"]
