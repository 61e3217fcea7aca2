"""The module registry as a gateway serves it to edges: assignments, blobs, rollout reports.

No sockets here: the connection hands in what a session received and sends
what this returns (``docs/protocol.md`` section 14).

- :meth:`ModuleService.assignments` is the MODULE_ASSIGN every edge gets: per
  deployed module the stable version's signed manifest (``base``) and, while
  a rollout is under way, the new version's (``target``) with the current
  share and labels. :meth:`ModuleService.refresh` re-reads ``modules.db`` when
  an ``edgeswarm agents`` command changed it.
- :meth:`ModuleService.blob_chunk` answers a BLOB_REQUEST from the store
  (every blob read is checked against its digest).
- :meth:`ModuleService.report` feeds an edge's MODULE_REPORT to the rollout
  (:class:`~edgeswarm.registry.Rollout`: one report is one of its ticks);
  advances, completions and rollbacks go to the history with the actor
  ``rollout`` and change the assignments, which the caller sends to every
  edge. A report about another rollout or version than the one under way is
  stale and changes nothing.
"""

from __future__ import annotations

import logging

from edgeswarm.registry import (
    ModuleStore,
    Rollout,
    RolloutEvent,
    RolloutPhase,
    UnknownModuleError,
)
from edgeswarm.wire import BlobChunk, BlobRequest, ModuleAssign, ModuleAssignment, ModuleReport

logger = logging.getLogger("edgeswarm.gateway")

ROLLOUT_ACTOR = "rollout"
"""Who the history names for the decisions a rollout takes itself."""


class ModuleService:
    """Serves one gateway's ``modules.db`` to its edges."""

    def __init__(self, store: ModuleStore) -> None:
        self.store = store
        self._rollouts: dict[str, tuple[int, Rollout]] = {}
        self._data_version: int | None = None
        self._assign = ModuleAssign(())
        self.refresh()

    def refresh(self) -> bool:
        """Re-read the deployments if another process changed ``modules.db``; whether the
        assignments changed (then send :meth:`assignments` to every edge)."""
        version = self.store.data_version()
        if version == self._data_version:
            return False
        self._data_version = version
        return self._rebuild()

    def reload(self) -> bool:
        """Re-read the deployments after this process changed ``modules.db`` itself (a
        record replicated from a peer gateway); whether the assignments changed."""
        self._data_version = self.store.data_version()
        return self._rebuild()

    def _rebuild(self) -> bool:
        rollouts: dict[str, tuple[int, Rollout]] = {}
        assignments = []
        for deployment in self.store.deployments():
            base = self.store.module(deployment.name, deployment.version).manifest_bytes
            if deployment.plan is None:
                assignments.append(
                    ModuleAssignment(deployment.name, base, rollout=deployment.rollout)
                )
                continue
            kept = self._rollouts.get(deployment.name)
            if kept is not None and kept[0] == deployment.rollout:
                rollout = kept[1]
            else:
                rollout = Rollout(deployment.plan)
            rollouts[deployment.name] = (deployment.rollout, rollout)
            target = self.store.module(deployment.name, deployment.plan.to_version)
            assignments.append(
                ModuleAssignment(
                    deployment.name,
                    base,
                    target.manifest_bytes,
                    share=rollout.share,
                    labels=tuple(sorted(deployment.plan.labels)),
                    rollout=deployment.rollout,
                )
            )
        self._rollouts = rollouts
        new = ModuleAssign(tuple(assignments))
        changed = new != self._assign
        self._assign = new
        return changed

    def assignments(self) -> ModuleAssign:
        """The MODULE_ASSIGN for every edge, as of now."""
        return self._assign

    def blob_chunk(self, request: BlobRequest) -> BlobChunk:
        """The answer to a BLOB_REQUEST; :class:`UnknownModuleError` for a digest the
        registry does not hold or an offset past its end (the caller answers ERROR
        ``UNKNOWN_BLOB``)."""
        blob = self.store.blob(request.digest)
        if request.offset >= len(blob):
            raise UnknownModuleError(
                f"blob {request.digest} has {len(blob)} bytes, none at {request.offset}"
            )
        data = blob[request.offset : request.offset + request.length]
        return BlobChunk(request.digest, offset=request.offset, size=len(blob), data=data)

    def report(self, report: ModuleReport, *, edge_id: str) -> list[RolloutEvent]:
        """Feed one edge's report to its rollout; the decisions it caused (recorded)."""
        entry = self._rollouts.get(report.module)
        if entry is None or entry[0] != report.rollout:
            return []
        number, rollout = entry
        if report.version != rollout.plan.to_version:
            return []
        events = rollout.observe(report.agent_ticks, report.faults)
        for event in events:
            logger.info(
                "rollout %s %s of %s: %s (report of %s)",
                number,
                event.action,
                report.module,
                event.detail,
                edge_id,
                extra={"module_name": report.module, "rollout": number, "action": event.action},
            )
            if event.action == "advance":
                detail = {"rollout": number, "stage": event.stage, "why": event.detail}
                self.store.record(
                    ROLLOUT_ACTOR, "advance", report.module, rollout.plan.to_version, detail
                )
            else:
                done = event.action == "complete"
                phase = RolloutPhase.COMPLETE if done else RolloutPhase.ROLLED_BACK
                self.store.end_rollout(
                    report.module, number, phase, actor=ROLLOUT_ACTOR, detail=event.detail
                )
        if events:
            self._rebuild()
            self._data_version = self.store.data_version()
        return events
