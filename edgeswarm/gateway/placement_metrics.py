"""Prometheus metrics of placement: epoch, agents per edge, imbalance, planned moves, and
the WAL checkpoints of ``checkpoints.db`` (read at scrape time)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from edgeswarm.placement import Assignment, MovePlan

from .checkpoint_store import CheckpointIndex

__all__ = ["CheckpointFileCollector", "PlacementMetrics"]

_WAL_COUNTERS = (
    ("wal_checkpoints", "WAL checkpoints of checkpoints.db (its own thread, or a restart)"),
    ("wal_restarts", "WAL checkpoints the gateway's loop ran itself to restart a full WAL"),
    ("failed_wal_checkpoints", "WAL checkpoints of checkpoints.db that failed (retried)"),
)


class PlacementMetrics:
    """Gauges and counters of the placement service, on the gateway's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.epoch = Gauge(
            "edgeswarm_placement_epoch",
            "Placement epoch (bumped on every membership change and every round of a bounded move)",
            registry=registry,
        )
        self.agents = Gauge(
            "edgeswarm_placement_agents",
            "Swarm agents assigned per edge",
            ["edge_id"],
            registry=registry,
        )
        self.unowned = Gauge(
            "edgeswarm_placement_unowned_agents",
            "Swarm agents no edge can own now (pinned to a down edge, or no active edge)",
            registry=registry,
        )
        self.imbalance = Gauge(
            "edgeswarm_placement_imbalance_ratio",
            "Most agents on one active edge over the mean of active edges",
            registry=registry,
        )
        self.moves = Counter(
            "edgeswarm_placement_moves_planned",
            "Agents whose owner changed in a move plan, by kind",
            ["kind"],
            registry=registry,
        )

    def observe(self, assignment: Assignment, plan: MovePlan | None) -> None:
        self.epoch.set(assignment.epoch)
        counts = assignment.counts()
        for edge_id, count in counts.items():
            self.agents.labels(edge_id=edge_id).set(count)
        self.unowned.set(int((assignment.owners < 0).sum()))
        loads = np.array([c for c in counts.values() if c], dtype=np.float64)
        self.imbalance.set(float(loads.max() / loads.mean()) if loads.size else 0.0)
        if plan is not None and plan.to_epoch == assignment.epoch:
            for batch in plan.batches:
                self.moves.labels(kind=batch.kind.value).inc(int(batch.ids.size))


class CheckpointFileCollector(Collector):
    """``edgeswarm_placement_checkpoint_file_*`` series of one :class:`CheckpointIndex`."""

    def __init__(self, checkpoints: CheckpointIndex) -> None:
        self._checkpoints = checkpoints

    def collect(self) -> Iterator[Metric]:
        counts = self._checkpoints.wal_counts()
        for (name, documentation), value in zip(_WAL_COUNTERS, counts, strict=True):
            yield CounterMetricFamily(
                f"edgeswarm_placement_checkpoint_file_{name}", documentation, value=value
            )
