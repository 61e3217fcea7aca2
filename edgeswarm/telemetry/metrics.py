"""Prometheus exposition for daemons."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, start_http_server

logger = logging.getLogger("edgeswarm.metrics")


def start_metrics_server(port: int, registry: CollectorRegistry, host: str = "127.0.0.1") -> int:
    """Serve ``registry`` at ``http://host:port/metrics``; returns the bound port (0 picks one)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    bound = int(server.server_address[1])
    logger.info("metrics listening", extra={"host": host, "port": bound})
    return bound
