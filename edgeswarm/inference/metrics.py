"""Prometheus series of the heavy lane: the inference node's and the gateway's."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from edgeswarm.telemetry import daemon_registry

from .lane import LaneCounters

__all__ = ["LaneCollector", "LaneMetrics", "NodeMetrics"]

PROTOCOLS = ("native", "oip")
"""How a call reached the node (``protocol`` label)."""
ERROR_KINDS = ("tensor", "overloaded", "model")
"""Why a call was answered with an error (``kind`` label)."""
_SECONDS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)


class NodeMetrics:
    """What an inference node counts, by model and protocol (``native`` or ``oip``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or daemon_registry("infer")
        r = self.registry
        self.batch_rows = Histogram(
            "edgeswarm_infer_batch_rows",
            "Rows per inference call",
            ["model", "protocol"],
            buckets=_ROWS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "edgeswarm_infer_queue_seconds",
            "Time from receipt to the start of the model's run",
            ["model"],
            buckets=_SECONDS,
            registry=r,
        )
        self.compute_seconds = Histogram(
            "edgeswarm_infer_compute_seconds",
            "Time the model ran for one call",
            ["model"],
            buckets=_SECONDS,
            registry=r,
        )
        self.errors = Counter(
            "edgeswarm_infer_errors",
            "Calls answered with an error, by kind (tensor, overloaded, model)",
            ["model", "protocol", "kind"],
            registry=r,
        )
        self.pending = Gauge(
            "edgeswarm_infer_pending", "Calls waiting for or running on a model", registry=r
        )
        self.gateway_connected = Gauge(
            "edgeswarm_infer_gateway_connected",
            "1 while the node's session with its gateway is open",
            registry=r,
        )

    def models_loaded(self, names: list[str]) -> None:
        """Show ``errors_total`` at 0 for every model, protocol and kind."""
        for name in names:
            for protocol in PROTOCOLS:
                for kind in ERROR_KINDS:
                    self.errors.labels(name, protocol, kind)


class LaneMetrics:
    """The gateway's heavy lane."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "edgeswarm_gateway_infer_requests", "INFER_REQUESTs from edges", registry=r
        )
        self.answers = Counter(
            "edgeswarm_gateway_infer_answers", "Answers to edges by status", ["status"], registry=r
        )
        self.latency = Histogram(
            "edgeswarm_gateway_infer_latency_seconds",
            "From an INFER_REQUEST's receipt to its answer",
            buckets=_SECONDS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "edgeswarm_gateway_infer_batch_rows",
            "Rows per batch sent to a node",
            buckets=_ROWS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "edgeswarm_gateway_infer_batch_requests",
            "Requests per batch sent to a node",
            buckets=_ROWS,
            registry=r,
        )
        self.nodes = Gauge(
            "edgeswarm_gateway_infer_nodes", "Inference nodes and OIP endpoints known", registry=r
        )
        self.queued_rows = Gauge(
            "edgeswarm_gateway_infer_queued_rows", "Rows waiting for a batch", registry=r
        )


class LaneCollector(Collector):
    """The lane's own totals (:class:`~edgeswarm.inference.lane.LaneCounters`) at each scrape."""

    _SERIES = (
        ("retries", "Batch attempts sent again after a node failed one"),
        ("node_failures", "Attempts a node failed: error, no answer in time, gone"),
        ("circuits_opened", "Times a node's circuit breaker opened"),
        ("late_answers", "Node answers for batches already answered (dropped)"),
        ("foreign_answers", "Node answers to attempts sent to another node (ignored)"),
        ("abandoned", "Requests dropped unanswered because their edge went away"),
    )

    def __init__(self, counters: LaneCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, help_text in self._SERIES:
            yield CounterMetricFamily(
                f"edgeswarm_gateway_infer_{name}", help_text, value=getattr(self._counters, name)
            )
