"""Prometheus series of an edge's sources and sinks (``edgeswarm_edge_io_*``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class IoMetrics:
    """Messages in and out, malformed input, stale agents, queue depth, reconnects."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.messages_in = Counter(
            "edgeswarm_edge_io_messages_in",
            "Messages taken from the source (MQTT: per-agent or batch messages)",
            ["io"],
            registry=self.registry,
        )
        self.observations_in = Counter(
            "edgeswarm_edge_io_observations_in",
            "Agent observations written into the agent table from received messages",
            ["io"],
            registry=self.registry,
        )
        self.messages_out = Counter(
            "edgeswarm_edge_io_messages_out",
            "Action messages handed to the sink's transport",
            ["io"],
            registry=self.registry,
        )
        self.malformed = Counter(
            "edgeswarm_edge_io_malformed_messages",
            "Messages refused (not decodable, wrong shape, unknown agent), by reason",
            ["io", "reason"],
            registry=self.registry,
        )
        self.dropped = Counter(
            "edgeswarm_edge_io_dropped_messages",
            "Messages dropped because a bounded queue was full, by direction (out: actions)",
            ["io", "direction"],
            registry=self.registry,
        )
        self.stale_agents = Gauge(
            "edgeswarm_edge_io_stale_agents",
            "Agents whose observation is older than --obs-max-age this tick (masked)",
            ["io"],
            registry=self.registry,
        )
        self.stale_agent_ticks = Counter(
            "edgeswarm_edge_io_stale_agent_ticks",
            "Agent-ticks masked as stale (their actions not published)",
            ["io"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "edgeswarm_edge_io_queue_depth",
            "Messages waiting in a queue, by direction (out: actions to publish; received messages"
            " are decoded on arrival, none wait)",
            ["io", "direction"],
            registry=self.registry,
        )
        self.reconnects = Counter(
            "edgeswarm_edge_io_reconnects",
            "Connections to the broker made after the first one",
            ["io"],
            registry=self.registry,
        )
        self.connected = Gauge(
            "edgeswarm_edge_io_connected",
            "1 while connected to the broker",
            ["io"],
            registry=self.registry,
        )
