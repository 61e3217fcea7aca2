"""The edge's Prometheus series, in their own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class EdgeMetrics:
    """Counters an edge updates as it ticks and sends."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ticks = Counter("edgeswarm_edge_ticks", "Ticks stepped", registry=self.registry)
        self.agents = Gauge("edgeswarm_edge_agents", "Agents on this edge", registry=self.registry)
        self.observations_sent = Counter(
            "edgeswarm_edge_observations_sent", "Observations sent", registry=self.registry
        )
        self.observations_acked = Counter(
            "edgeswarm_edge_observations_acked",
            "Observations acknowledged by the gateway",
            registry=self.registry,
        )
        self.batches_in_flight = Gauge(
            "edgeswarm_edge_batches_in_flight", "Batches awaiting an ack", registry=self.registry
        )
        self.ack_latency = Histogram(
            "edgeswarm_edge_ack_latency_seconds",
            "Time from sending a batch to its ack",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.tick_seconds = Histogram(
            "edgeswarm_edge_tick_seconds",
            "Time to sense, step every policy and apply actions for one tick",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
            registry=self.registry,
        )
        self.policies_quarantined = Gauge(
            "edgeswarm_edge_policies_quarantined",
            "Policies stopped after a fault",
            registry=self.registry,
        )
        self.policy_faults = Counter(
            "edgeswarm_edge_policy_faults",
            "Policy quarantines by policy and error kind (load, trap, memory, deadline, fuel, "
            "host_calls, abi, nonfinite_action, action_bounds)",
            ["policy", "kind"],
            registry=self.registry,
        )
        self.world_repairs = Counter(
            "edgeswarm_edge_world_nonfinite_repairs",
            "Agents whose action, velocity or position was not finite and was repaired",
            registry=self.registry,
        )
        self.policies_reenabled = Counter(
            "edgeswarm_edge_policies_reenabled",
            "Quarantined policies put back in service",
            registry=self.registry,
        )
        self.spool_quarantined = Counter(
            "edgeswarm_edge_spool_quarantined_batches",
            "Spooled batches moved to the quarantine, never sent, by reason"
            " (checksum, unsendable, rejected)",
            ["reason"],
            registry=self.registry,
        )
        self.storage_errors = Counter(
            "edgeswarm_edge_storage_errors",
            "Reads or writes of the edge's files that failed, by store (spool, state)",
            ["store"],
            registry=self.registry,
        )
