"""Prometheus metrics of placement: epoch, agents per edge, imbalance, planned moves."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from edgeswarm.placement import Assignment, MovePlan

__all__ = ["PlacementMetrics"]


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
