"""The edge's Prometheus series, in their own registry.

Most are updated as the edge ticks (:class:`EdgeMetrics`); the delivery totals
and the connection are read from the uplink when Prometheus scrapes
(:class:`UplinkCollector`), so they can never disagree with the summary line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edgeswarm.telemetry import daemon_registry

from .policy.errors import FAULT_KINDS
from .spool_records import QuarantineReason

if TYPE_CHECKING:
    from .uplink import Uplink

STORES = ("spool", "state")
"""The edge's files, as ``edgeswarm_edge_storage_errors_total{store}`` names them."""


class EdgeMetrics:
    """Counters an edge updates as it ticks and sends."""

    def __init__(self) -> None:
        self.registry = daemon_registry("edge")
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
        self.lease_expired = Counter(
            "edgeswarm_edge_lease_expired",
            "Times the placement lease ran out (the edge stopped stepping its placed agents)",
            registry=self.registry,
        )
        self.fenced_agents = Gauge(
            "edgeswarm_edge_fenced_agents",
            "Placed agents not stepped now: no lease (partition) or no assignment yet",
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

        for reason in QuarantineReason:  # every known label shows 0 before its first event
            self.spool_quarantined.labels(str(reason))
        for store in STORES:
            self.storage_errors.labels(store)

    def policies_loaded(self, names: list[str]) -> None:
        """Show ``policy_faults_total`` at 0 for every kind of every loaded policy."""
        for name in names:
            for kind in FAULT_KINDS:
                self.policy_faults.labels(policy=name, kind=kind)


class UplinkCollector(Collector):
    """The uplink's delivery totals and connection, read at scrape time."""

    def __init__(self, uplink: Uplink) -> None:
        self._uplink = uplink

    def collect(self) -> Iterator[Metric]:
        uplink, counters = self._uplink, self._uplink.counters
        yield GaugeMetricFamily(
            "edgeswarm_edge_gateway_connected",
            "1 while a session with the gateway is open, else 0",
            value=int(uplink.connected),
        )
        yield CounterMetricFamily(
            "edgeswarm_edge_reconnects",
            "Connection attempts and sessions that failed (each followed by a backoff)",
            value=counters.retries,
        )
        yield CounterMetricFamily(
            "edgeswarm_edge_redirects",
            "REDIRECTs received: a gateway sent this edge to the gateway ring's owner of it",
            value=counters.redirects,
        )
        yield CounterMetricFamily(
            "edgeswarm_edge_sessions",
            "Sessions with the gateway opened (welcomed)",
            value=counters.connects,
        )
        yield GaugeMetricFamily(
            "edgeswarm_edge_spool_bytes",
            "Payload bytes of the batches held in the spool (unacknowledged)",
            value=uplink.spool.bytes,
        )
        yield GaugeMetricFamily(
            "edgeswarm_edge_spool_max_bytes",
            "Bound of the spool (--spool-max-bytes): at it, --overflow decides",
            value=uplink.spool.max_bytes,
        )
        yield CounterMetricFamily(
            "edgeswarm_edge_spool_disk_full_waits",
            "Times a spool write found the disk full and the edge waited for room",
            value=counters.disk_full_waits,
        )
        yield CounterMetricFamily(
            "edgeswarm_edge_dropped_batches",
            "Batches dropped from a full spool (--overflow drop_oldest), never delivered",
            value=counters.dropped_batches,
        )
        yield CounterMetricFamily(
            "edgeswarm_edge_resent_batches",
            "Batches sent again after a reconnect (the gateway stores each once)",
            value=counters.resent_batches,
        )
        yield CounterMetricFamily(
            "edgeswarm_edge_batches_acked",
            "Batches the gateway acknowledged (durable there)",
            value=counters.acked_batches,
        )
