"""Prometheus registries of the daemons: no ``_created`` series, a build-info series.

Every daemon (gateway, edge, inference node) keeps its series in a registry
from :func:`daemon_registry` and serves it with
:class:`~edgeswarm.telemetry.endpoint.DaemonEndpoint` beside its health probes.
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics

from edgeswarm import __version__

__all__ = ["daemon_registry"]


def daemon_registry(process: str) -> CollectorRegistry:
    """A new registry holding ``edgeswarm_build_info{version,python,process} 1``.

    Turns prometheus-client's ``_created`` series off for the whole process: they
    double every counter and histogram and no dashboard here reads them.
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    Gauge(
        "edgeswarm_build_info",
        "Version of the running edgeswarm (always 1; the labels say which)",
        ["version", "python", "process"],
        registry=registry,
    ).labels(__version__, platform.python_version(), process).set(1)
    return registry
