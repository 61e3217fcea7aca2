"""The HTTP endpoint of a daemon: Prometheus metrics beside liveness and readiness probes.

One small WSGI app on its own thread (prometheus-client's WSGI app for
``/metrics``, which also negotiates OpenMetrics and gzip)::

    GET /metrics   the daemon's registry
    GET /healthz   200 while the daemon's event loop turns (alive), else 503
    GET /readyz    200 when it can do its job (each daemon says what that takes), else 503
    anything else  404

The probes answer JSON: ``{"status": "ok"}`` or ``{"status": "unavailable",
"problems": ["…"]}``, so a person with ``curl`` sees why, and Kubernetes reads the
status code. The daemon's loop proves it is alive by calling :meth:`Probes.beat`
(:meth:`Probes.keep_beating` does it once a second); a loop stuck for
``stall_s`` fails ``/healthz``.

Errors::

    MetricsEndpointError   the endpoint cannot listen (port in use, bad host): the
                           message names the address and the option to change
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from edgeswarm.errors import EdgeswarmError
from edgeswarm.resource import Resource

__all__ = ["DEFAULT_STALL_S", "DaemonEndpoint", "MetricsEndpointError", "Probes"]

logger = logging.getLogger("edgeswarm.metrics")

DEFAULT_STALL_S = 10.0
"""A daemon whose loop has not beaten for this long is not alive (``/healthz`` 503)."""
BEAT_INTERVAL_S = 1.0
"""How often :meth:`Probes.keep_beating` beats."""

Readiness = Callable[[], Iterable[str]]
"""What keeps a daemon from being ready now, one short sentence each; nothing: ready."""


class MetricsEndpointError(EdgeswarmError):
    """The metrics and health endpoint cannot listen where it was told to."""


class Probes:
    """Liveness (the loop beats) and readiness (the daemon's own check), thread-safe reads."""

    def __init__(
        self,
        readiness: Readiness | None = None,
        *,
        stall_s: float = DEFAULT_STALL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._readiness = readiness
        self.stall_s = stall_s
        self._clock = clock
        self._last_beat = clock()

    def beat(self) -> None:
        """The daemon's loop is turning."""
        self._last_beat = self._clock()

    async def keep_beating(self, interval_s: float = BEAT_INTERVAL_S) -> None:
        """Beat every ``interval_s`` until cancelled (run it as a task of the daemon's loop)."""
        while True:
            self.beat()
            await asyncio.sleep(interval_s)

    def liveness(self) -> list[str]:
        """Why the daemon is not alive; empty when it is."""
        silent = self._clock() - self._last_beat
        if silent > self.stall_s:
            return [f"event loop stalled for {silent:.1f} s (limit {self.stall_s:g} s)"]
        return []

    def readiness(self) -> list[str]:
        """Why the daemon is not ready; empty when it is (alive, and its own check passes)."""
        problems = self.liveness()
        if self._readiness is not None:
            try:
                problems.extend(self._readiness())
            except Exception as exc:  # a check that breaks says so instead of killing the thread
                problems.append(f"readiness check failed: {exc!r}")
        return problems


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged (Prometheus scrapes every few seconds)."""


def _probe_app(probes: Probes, registry: CollectorRegistry) -> Any:
    metrics = make_wsgi_app(registry)

    def answer(start_response: Any, status: str, body: dict[str, Any]) -> list[bytes]:
        data = json.dumps(body).encode()
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [data]

    def probe(start_response: Any, problems: list[str]) -> list[bytes]:
        if problems:
            body = {"status": "unavailable", "problems": problems}
            return answer(start_response, "503 Service Unavailable", body)
        return answer(start_response, "200 OK", {"status": "ok"})

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        if path == "/healthz":
            return probe(start_response, probes.liveness())
        if path == "/readyz":
            return probe(start_response, probes.readiness())
        return answer(
            start_response,
            "404 Not Found",
            {"error": f"no {path}", "paths": ["/metrics", "/healthz", "/readyz"]},
        )

    return app


class DaemonEndpoint(Resource):
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (0 picks a port),
    served on a daemon thread until ``close()``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        probes: Probes,
        *,
        host: str,
        port: int,
        options: str = "--metrics-host/--metrics-port",
    ) -> None:
        """Raises :class:`MetricsEndpointError` naming the address and ``options`` when it
        cannot listen there."""
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        except (OSError, UnicodeError) as exc:
            raise MetricsEndpointError(
                f"metrics endpoint: cannot resolve host {host!r} ({exc}); check {options}"
            ) from None

        class Server(_Server):
            address_family = family

        try:
            self._server = make_server(
                host, port, _probe_app(probes, registry), Server, handler_class=_QuietHandler
            )
        except OSError as exc:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise MetricsEndpointError(
                f"metrics endpoint cannot listen on {where}: {exc.strerror or exc}; give"
                f" {options} another value (port 0 picks a free one, -1 turns it off)"
            ) from None
        self.host = host
        self.port = int(self._server.server_address[1])
        """The bound port (the real one when 0 was asked for)."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-endpoint", daemon=True
        )
        self._thread.start()
        logger.info("metrics listening", extra={"host": host, "port": self.port})

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
