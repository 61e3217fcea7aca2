"""Module distribution in the gateway process: :class:`ModuleService` on live edge sessions.

- Every edge session that negotiated feature ``modules`` gets MODULE_ASSIGN
  once welcomed (:meth:`ModuleDistribution.attach`), and again whenever the
  assignments change: ``edgeswarm agents rollout|rollback`` wrote
  ``modules.db`` (seen by :meth:`ModuleDistribution.run`, which reads SQLite's
  ``data_version`` every :data:`POLL_INTERVAL_S`, like ``revocation.py``), or
  a report made a rollout advance, complete or roll back.
- BLOB_REQUEST is answered with a BLOB_CHUNK from the registry, or ERROR
  ``UNKNOWN_BLOB`` (logged, counted) for a digest it does not hold; the
  session goes on.
- MODULE_REPORT feeds the rollout and the per-version metrics. An edge
  counts only for itself and only for a version it is assigned: a report
  about anything else, or one that claims more agent-ticks than the edge's
  HELLO ``agents`` times its ticks, is ignored (and counted as such), so that
  no peer can invent label values, move another edge's figures or outweigh
  the fleet in a rollout's judgement.

Metrics (docs/operations.md): ``edgeswarm_module_agents{module,version}``
(agents on each version, from each connected edge's last report),
``edgeswarm_module_agent_ticks_total`` and ``edgeswarm_module_faults_total``
``{module,version}``, ``edgeswarm_module_rollout_decisions_total{module,action}``,
``edgeswarm_module_blob_bytes_sent_total``,
``edgeswarm_module_requests_refused_total{reason}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from edgeswarm.registry import (
    ManifestError,
    ModuleStore,
    RegistryError,
    UnknownModuleError,
    parse_manifest,
)
from edgeswarm.wire import (
    BlobChunk,
    BlobRequested,
    Error,
    ErrorCode,
    ModuleAssign,
    ModuleReport,
    ModuleReportReceived,
)

from .module_service import ModuleService

__all__ = ["POLL_INTERVAL_S", "ModuleDistribution", "ModulePeer"]

logger = logging.getLogger("edgeswarm.gateway")

POLL_INTERVAL_S = 0.25
"""How often ``modules.db``'s ``data_version`` is read: a rollout an operator starts
reaches the connected edges within this (plus a loop turn)."""


class ModulePeer(Protocol):
    """An edge session that speaks feature ``modules`` (``GatewayConnection``)."""

    @property
    def edge_id(self) -> str | None: ...

    @property
    def declared_agents(self) -> int:
        """Agents the edge said it runs (HELLO ``agents``): a report's bound."""

    def send_module_frame(self, frame: ModuleAssign | BlobChunk | Error) -> None:
        """Queue ``frame`` on the session; nothing once it is closed."""


class ModuleMetrics:
    """The per-version figures of module distribution, on the gateway's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["module", "version"]
        self.agents = Gauge(
            "edgeswarm_module_agents",
            "Agents running each module version (connected edges' last reports).",
            labels,
            registry=registry,
        )
        self.agent_ticks = Counter(
            "edgeswarm_module_agent_ticks",
            "Agent-ticks edges reported for each module version.",
            labels,
            registry=registry,
        )
        self.faults = Counter(
            "edgeswarm_module_faults",
            "Agent-ticks lost to faults (traps, fuel, deadlines, quarantine) per module version.",
            labels,
            registry=registry,
        )
        self.decisions = Counter(
            "edgeswarm_module_rollout_decisions",
            "Rollouts advanced, completed or rolled back by the gateway itself.",
            ["module", "action"],
            registry=registry,
        )
        self.blob_bytes = Counter(
            "edgeswarm_module_blob_bytes_sent",
            "Module blob bytes sent to edges (BLOB_CHUNK data).",
            registry=registry,
        )
        self.refused = Counter(
            "edgeswarm_module_requests_refused",
            "BLOB_REQUESTs answered UNKNOWN_BLOB and MODULE_REPORTs ignored, by reason.",
            ["reason"],
            registry=registry,
        )


class ModuleDistribution:
    """One gateway's module registry served to its edge sessions (see the docstring)."""

    def __init__(
        self,
        store: ModuleStore,
        *,
        registry: CollectorRegistry,
        on_store_error: Callable[[], None] | None = None,
        interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        """``on_store_error()`` counts each failed read or write of ``modules.db``."""
        self.service = ModuleService(store)
        self.metrics = ModuleMetrics(registry)
        self.interval_s = interval_s
        self._on_store_error = on_store_error
        self._attached: set[ModulePeer] = set()
        self._agents: dict[str, dict[tuple[str, str], int]] = {}
        """Edge id -> (module, version) -> agents, from its last reports."""
        self._assigned: frozenset[tuple[str, str]] = frozenset()
        self.changes = 0
        """Times the assignments changed (replication sends its index again)."""
        self._versions_assigned()

    def attach(self, peer: ModulePeer) -> None:
        """A welcomed edge session with feature ``modules``: send it its assignments."""
        self._attached.add(peer)
        peer.send_module_frame(self.service.assignments())

    def detach(self, peer: ModulePeer) -> None:
        """The session ended: its edge no longer counts in ``edgeswarm_module_agents``."""
        if peer in self._attached:
            self._attached.discard(peer)
            if peer.edge_id in self._agents:
                del self._agents[peer.edge_id]
                self._set_agents()

    def receive(self, peer: ModulePeer, event: BlobRequested | ModuleReportReceived) -> None:
        """A frame of feature ``modules`` from ``peer`` (only edges may send them)."""
        if isinstance(event, BlobRequested):
            self._blob(peer, event)
        else:
            self._report(peer, event.report)

    def _blob(self, peer: ModulePeer, event: BlobRequested) -> None:
        request = event.request
        try:
            chunk = self.service.blob_chunk(request)
        except UnknownModuleError as exc:
            self._refuse_blob(peer, "unknown_blob", str(exc))
            return
        except RegistryError as exc:  # modules.db unreadable, or a stored blob damaged
            self.store_failed(exc)
            self._refuse_blob(peer, "store_error", f"blob {request.digest} cannot be read now")
            return
        self.metrics.blob_bytes.inc(len(chunk.data))
        peer.send_module_frame(chunk)

    def _refuse_blob(self, peer: ModulePeer, reason: str, message: str) -> None:
        self.metrics.refused.labels(reason).inc()
        logger.warning(
            "blob request refused",
            extra={"edge_id": peer.edge_id, "reason": reason, "error": message},
        )
        peer.send_module_frame(Error(code=ErrorCode.UNKNOWN_BLOB, message=message[:200]))

    def _report(self, peer: ModulePeer, report: ModuleReport) -> None:
        edge_id = peer.edge_id
        key = (report.module, report.version)
        if edge_id is None or key not in self._assigned:
            self.metrics.refused.labels("report_not_assigned").inc()
            return
        if report.agent_ticks > peer.declared_agents * report.ticks:
            self.metrics.refused.labels("report_inconsistent").inc()
            logger.warning(
                "module report refused: more agent-ticks than the edge's agents times its ticks",
                extra={"edge_id": edge_id, "module_name": report.module, "ticks": report.ticks},
            )
            return
        self.metrics.agent_ticks.labels(*key).inc(report.agent_ticks)
        self.metrics.faults.labels(*key).inc(report.faults)
        agents = report.agent_ticks // report.ticks if report.ticks else 0
        self._agents.setdefault(edge_id, {})[key] = agents
        try:
            events = self.service.report(report, edge_id=edge_id)
        except RegistryError as exc:
            self.store_failed(exc)
            return
        for event in events:
            self.metrics.decisions.labels(report.module, event.action).inc()
        if events:
            self._changed()
        else:
            self._set_agents()

    def refresh(self) -> bool:
        """Re-read ``modules.db``; whether the assignments changed (then broadcast)."""
        try:
            changed = self.service.refresh()
        except RegistryError as exc:
            self.store_failed(exc)
            return False
        if changed:
            self._changed()
        return changed

    def reload(self) -> bool:
        """Re-read ``modules.db`` after this process changed it (replication); whether the
        assignments changed (then they went to every edge)."""
        try:
            changed = self.service.reload()
        except RegistryError as exc:
            self.store_failed(exc)
            return False
        if changed:
            self._changed()
        return changed

    async def run(self) -> None:
        """Poll ``modules.db`` for changes other processes made, until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            self.refresh()

    def _changed(self) -> None:
        self.changes += 1
        self._versions_assigned()
        assign = self.service.assignments()
        for peer in self._attached:
            peer.send_module_frame(assign)
        # an edge that moved off a version reports its new one within its report period
        self._agents = {
            edge: {k: n for k, n in versions.items() if k in self._assigned}
            for edge, versions in self._agents.items()
        }
        self._set_agents()

    def _versions_assigned(self) -> None:
        pairs = set()
        for entry in self.service.assignments().assignments:
            for document in (entry.base, entry.target):
                if document is None:
                    continue
                try:
                    pairs.add((entry.module, parse_manifest(document).version))
                except ManifestError:  # admitted by publish: cannot happen, but say so
                    logger.error("a stored manifest does not parse", extra={"module": entry.module})
        self._assigned = frozenset(pairs)

    def _set_agents(self) -> None:
        totals: dict[tuple[str, str], int] = dict.fromkeys(self._assigned, 0)
        for versions in self._agents.values():
            for key, agents in versions.items():
                totals[key] = totals.get(key, 0) + agents
        self.metrics.agents.clear()
        for (module, version), agents in totals.items():
            self.metrics.agents.labels(module, version).set(agents)

    def store_failed(self, error: RegistryError) -> None:
        logger.error("modules.db failed", extra={"error": str(error)})
        if self._on_store_error is not None:
            self._on_store_error()
