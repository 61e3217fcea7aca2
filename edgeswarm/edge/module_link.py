"""An edge's side of module distribution: verify what the gateway assigns, fetch it, apply
it between ticks, report how a rolled-out version fares (``docs/protocol.md`` section 14).

No sockets here: the uplink hands in what its session received
(:meth:`ModuleLink.on_assign`, :meth:`ModuleLink.on_chunk`) and sends what
these return; the tick loop calls :meth:`ModuleLink.apply` between ticks and
:meth:`ModuleLink.after_tick` after each.

- Every manifest is verified (signature, fields) before anything is fetched;
  an assignment with a bad one is refused, logged and counted, and the edge
  keeps running what it runs.
- Blobs are fetched by digest in chunks into a content-addressed cache
  (:class:`~edgeswarm.registry.fetch.BlobCache`): after a disconnect
  :meth:`ModuleLink.resume` asks for the rest; a blob that fails its digest
  is discarded and fetched again, at most :data:`MAX_FETCH_ATTEMPTS` times.
- Applying: the policy slot named like the module runs the base version (a
  hot swap when it changes: the agents keep their state); during a rollout
  a second slot runs the target and each agent of the two runs the version
  its share point gives it. A module whose state layout differs is refused
  (:class:`PolicyStateLayoutError`): nothing changes; unless it exports
  ``es_migrate``: a swap migrates every agent of the slot (all or none), a
  rollout beside the old version migrates each agent when it moves to the new
  one and keeps the state it left; an agent moved back (a rollback) gets that
  state again, since the old version cannot read the new layout. Agents whose
  migration fails stay on the old version and count as the new one's faults,
  so the rollout rolls back.
- Reports: every ``report_ticks`` ticks, one MODULE_REPORT per version each
  module runs with its agent-ticks and faults (all of its agent-ticks while its
  slot is quarantined); the target's drive the rollout, every one feeds the
  gateway's per-version metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from edgeswarm.registry import (
    DigestMismatchError,
    FetchError,
    Manifest,
    ModuleRefusedError,
    RegistryError,
    parse_manifest,
    share_point,
    verify_manifest,
)
from edgeswarm.registry.fetch import DEFAULT_CHUNK_BYTES, BlobCache, BlobFetch
from edgeswarm.wire import BlobChunk, BlobRequest, ModuleAssign, ModuleAssignment, ModuleReport

from .agent_table import AgentTable
from .policy.errors import PolicyError
from .policy.set import PolicySet, PolicySpec

logger = logging.getLogger("edgeswarm.edge")

MAX_FETCH_ATTEMPTS = 3
"""Fetches of one blob that may fail their digest before the assignment is given up."""


@dataclass
class _Wanted:
    """One verified assignment."""

    module: str
    base: Manifest
    target: Manifest | None
    share: float
    labels: frozenset[str]
    rollout: int


@dataclass
class _Running:
    """What one module runs on this edge now."""

    base_slot: int
    base: Manifest | None
    target_slot: int | None = None
    target: Manifest | None = None
    rollout: int = 0
    ticks: int = 0
    """Ticks counted since the last report."""
    base_tally: list[int] = field(default_factory=lambda: [0, 0])
    """Agent-ticks and faults of the base version since the last report."""
    target_tally: list[int] = field(default_factory=lambda: [0, 0])
    """The same of the target version."""
    unmigrated: int = 0
    """Agents the target's ``es_migrate`` failed to take at the last assignment: they stay
    on the base and count as agent-ticks and faults of the target every tick (so the
    rollout rolls back), until the next assignment."""
    left_state: dict[int, NDArray[np.float32]] = field(default_factory=dict)
    """Across a layout change: the state each agent (by row) had in the base version's
    layout when it was migrated to the target, given back if it returns."""

    def reset_counts(self) -> None:
        self.ticks = 0
        self.base_tally[:] = self.target_tally[:] = [0, 0]


@dataclass
class ModuleLink:
    """Applies the gateway's module assignments to one edge's table and policy set."""

    table: AgentTable
    policies: PolicySet
    cache: BlobCache
    slots: dict[str, int]
    """Policy slot of each module name the edge runs (from ``--policy``)."""
    edge_labels: frozenset[str] = frozenset()
    report_ticks: int = 1
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    """Bytes asked for per BLOB_REQUEST."""
    spec_template: PolicySpec | None = None
    """Limits (fuel, memory, deadline) new modules are loaded with."""
    refused: int = 0
    """Assignments refused (a manifest that does not verify, a blob that never matched)."""
    state_moves: dict[str, int] = field(default_factory=lambda: {"migrated": 0, "restored": 0})
    """Agents whose state ``es_migrate`` converted, and agents moved back to the base version
    across a layout change that got the state they left it with."""
    _wanted: dict[str, _Wanted] = field(default_factory=dict)
    _running: dict[str, _Running] = field(default_factory=dict)
    _fetches: dict[str, BlobFetch] = field(default_factory=dict)
    _attempts: dict[str, int] = field(default_factory=dict)
    _points: NDArray[np.float64] | None = None
    _unapplied: set[str] = field(default_factory=set)
    """Modules whose current assignment :meth:`apply` has not applied yet (or refused)."""

    # --- from the gateway -------------------------------------------------------

    def on_assign(self, assign: ModuleAssign) -> list[BlobRequest]:
        """Take a MODULE_ASSIGN in; the BLOB_REQUESTs to send for what is missing."""
        wanted: dict[str, _Wanted] = {}
        for entry in assign.assignments:
            if entry.module not in self.slots:
                continue  # no agent here runs it
            try:
                wanted[entry.module] = self._verified(entry)
            except RegistryError as exc:
                self.refused += 1
                logger.warning(
                    "module assignment of %s refused: %s",
                    entry.module,
                    exc,
                    extra={"module_name": entry.module, "error": str(exc)},
                )
        self._wanted = wanted
        self._unapplied = set(wanted)
        return self._requests()

    def _verified(self, entry: ModuleAssignment) -> _Wanted:
        manifests: list[Manifest | None] = []
        for document in (entry.base, entry.target):
            if document is None:
                manifests.append(None)
                continue
            manifest = parse_manifest(document)
            verify_manifest(manifest)
            if manifest.name != entry.module:
                raise ModuleRefusedError(f"manifest of {manifest.name} assigned as {entry.module}")
            manifests.append(manifest)
        base, target = manifests
        assert base is not None
        return _Wanted(
            entry.module, base, target, entry.share, frozenset(entry.labels), entry.rollout
        )

    def _requests(self) -> list[BlobRequest]:
        requests = []
        for wanted in self._wanted.values():
            for manifest in (wanted.base, wanted.target):
                if manifest is None or self.cache.get(manifest.digest) is not None:
                    continue
                fetch = self._fetches.get(manifest.digest)
                if fetch is None:
                    fetch = self.cache.fetch(
                        manifest.digest, manifest.size, chunk_bytes=self.chunk_bytes
                    )
                    self._fetches[manifest.digest] = fetch
                    request = fetch.next_request()
                    if request is not None:
                        requests.append(BlobRequest(request.digest, request.offset, request.length))
        return requests

    def resume(self) -> list[BlobRequest]:
        """After a reconnect: ask for the rest of every blob still on its way."""
        self._fetches.clear()  # their .part files stay; new fetches resume from them
        return self._requests()

    def on_chunk(self, chunk: BlobChunk) -> list[BlobRequest]:
        """Take a BLOB_CHUNK in; the next request, if any."""
        fetch = self._fetches.get(chunk.digest)
        if fetch is None:
            return []
        try:
            if not fetch.receive(chunk.digest, chunk.offset, chunk.data):
                request = fetch.next_request()
                assert request is not None
                return [BlobRequest(request.digest, request.offset, request.length)]
            fetch.finish()
        except (FetchError, DigestMismatchError) as exc:
            del self._fetches[chunk.digest]
            attempts = self._attempts.get(chunk.digest, 0) + 1
            self._attempts[chunk.digest] = attempts
            logger.warning(
                "blob %s refused (%d of %d): %s",
                chunk.digest,
                attempts,
                MAX_FETCH_ATTEMPTS,
                exc,
                extra={"digest": chunk.digest, "error": str(exc)},
            )
            if attempts >= MAX_FETCH_ATTEMPTS:
                self.refused += 1
                self._give_up(chunk.digest)
                return []
            return self._requests()
        del self._fetches[chunk.digest]
        return []

    def _give_up(self, digest: str) -> None:
        """A blob never matched its digest: drop the rollout that needs it (the edge keeps
        its base version), or the whole assignment when it is the base's."""
        for name, wanted in list(self._wanted.items()):
            if wanted.base.digest == digest:
                del self._wanted[name]
                self._unapplied.discard(name)
            elif wanted.target is not None and wanted.target.digest == digest:
                wanted.target = None
                self._unapplied.add(name)

    # --- between ticks ------------------------------------------------------------

    def _spec(self, manifest: Manifest, blob: bytes) -> PolicySpec:
        name = f"{manifest.name}@{manifest.version}"
        template = self.spec_template
        if template is None:
            return PolicySpec(blob, name=name)
        return PolicySpec(
            blob,
            name=name,
            fuel=template.fuel,
            host_calls=template.host_calls,
            memory_limit=template.memory_limit,
            deadline_s=template.deadline_s,
        )

    def apply(self) -> list[str]:
        """Apply every assignment whose blobs are here (call between ticks); the modules
        whose versions or shares changed."""
        changed = []
        for name in sorted(self._unapplied):  # an applied assignment costs a tick nothing
            wanted = self._wanted[name]
            blobs = [self.cache.get(m.digest) if m else b"" for m in (wanted.base, wanted.target)]
            if any(b is None for b in blobs):
                continue  # still fetching
            self._unapplied.discard(name)
            running = self._running.setdefault(name, _Running(self.slots[name], None))
            try:
                if self._apply_one(running, wanted, blobs):
                    changed.append(name)
            except PolicyError as exc:
                self.refused += 1
                logger.warning(
                    "module %s not applied: %s",
                    name,
                    exc,
                    extra={"module_name": name, "error": str(exc)},
                )
        return changed

    def _apply_one(self, running: _Running, wanted: _Wanted, blobs: list[bytes | None]) -> bool:
        changed = False
        if running.base is None or running.base.digest != wanted.base.digest:
            assert blobs[0] is not None
            self._swap(running.base_slot, self._spec(wanted.base, blobs[0]))
            running.base = wanted.base
            changed = True
        target = wanted.target
        if target is not None and (
            running.target is None or running.target.digest != target.digest
        ):
            assert blobs[1] is not None
            spec = self._spec(target, blobs[1])
            if running.target_slot is None:
                running.target_slot = self.policies.add(
                    spec, like=running.base_slot, table=self.table
                )
            else:
                self._swap(running.target_slot, spec)
            running.target = target
            changed = True
        if running.rollout != wanted.rollout:
            running.rollout = wanted.rollout
            running.reset_counts()
        share = wanted.share if target is not None else 0.0
        takes_part = not wanted.labels or bool(wanted.labels & self.edge_labels)
        self._assign(running, share if takes_part else 0.0)
        if target is None:
            running.target = None
            running.left_state.clear()
        return changed

    def _swap(self, slot: int, spec: PolicySpec) -> None:
        """Hot swap ``slot``, migrating its agents' state if the layout changes."""
        agents = int(np.count_nonzero(self.table.policy == slot))
        old_dim = self.policies.state_dim_of(slot)
        self.policies.swap(slot, spec, table=self.table)
        if old_dim is not None and old_dim != self.policies.state_dim_of(slot) and agents:
            self._moved("migrated", agents, spec.label())

    def _share_points(self) -> NDArray[np.float64]:
        if self._points is None or self._points.shape[0] != len(self.table):
            self._points = np.array(
                [share_point(int(agent)) for agent in self.table.ids], dtype=np.float64
            )
        return self._points

    def _assign(self, running: _Running, share: float) -> None:
        policy = self.table.policy
        base, target = running.base_slot, running.target_slot
        running.unmigrated = 0
        if target is None:
            return
        members = (policy == base) | (policy == target)
        on_target = members & (self._share_points() < share)
        if self.policies.state_dim_of(base) != self.policies.state_dim_of(target):
            self._move_across_layouts(running, target, on_target, members & ~on_target)
        policy[members] = base
        policy[on_target] = target

    def _move_across_layouts(
        self,
        running: _Running,
        target: int,
        on_target: NDArray[np.bool_],
        on_base: NDArray[np.bool_],
    ) -> None:
        """Before agents change slots across a layout change: give back the state they left
        with to those that return to the base, migrate those that go to the target (all
        or none). When the target's ``es_migrate`` fails, those stay on the base (taken out
        of ``on_target``) and count as the target's faults until the next assignment."""
        policy, state = self.table.policy, self.table.state
        returning = np.flatnonzero(on_base & (policy == target))
        if returning.size:
            for row in returning.tolist():
                kept = running.left_state.pop(row, None)
                state[row] = 0.0 if kept is None else kept
            self._moved("restored", int(returning.size), self.policies.name_of(running.base_slot))
        arriving = np.flatnonzero(on_target & (policy == running.base_slot))
        if not arriving.size:
            return
        left = state[arriving].copy()
        try:
            self.policies.migrate_rows(
                target, from_slot=running.base_slot, table=self.table, rows=arriving
            )
        except PolicyError as exc:
            on_target[arriving] = False
            running.unmigrated = int(arriving.size)
            self.refused += 1
            logger.warning(
                "%d agents stay on %s: %s",
                arriving.size,
                self.policies.name_of(running.base_slot),
                exc,
                extra={"policy": self.policies.name_of(target), "error": str(exc)},
            )
            return
        running.left_state.update(zip(arriving.tolist(), left, strict=True))
        self._moved("migrated", int(arriving.size), self.policies.name_of(target))

    def _moved(self, how: str, agents: int, policy: str) -> None:
        self.state_moves[how] += agents
        logger.info(
            "agent state %s across a layout change",
            how,
            extra={"policy": policy, "agents": agents, "state_move": how},
        )

    # --- after each tick ------------------------------------------------------------

    def after_tick(self) -> list[ModuleReport]:
        """Count the tick; the MODULE_REPORTs due: every ``report_ticks`` ticks one per
        version each module runs (the base version's feed the gateway's per-version
        metrics; the target's also drive its rollout)."""
        reports = []
        for name, running in self._running.items():
            if running.base is None:
                continue
            running.ticks += 1
            for slot, tally in (
                (running.base_slot, running.base_tally),
                (running.target_slot, running.target_tally),
            ):
                if slot is None or (slot == running.target_slot and running.target is None):
                    continue
                agents = int(np.count_nonzero(self.table.policy == slot))
                faults = agents if self.policies.is_quarantined(slot) else 0
                if slot == running.target_slot:
                    agents, faults = agents + running.unmigrated, faults + running.unmigrated
                tally[0] += agents
                tally[1] += faults
            if running.ticks < self.report_ticks:
                continue
            for manifest, tally in (
                (running.base, running.base_tally),
                (running.target, running.target_tally),
            ):
                if manifest is not None:
                    reports.append(
                        ModuleReport(
                            name,
                            manifest.version,
                            rollout=running.rollout,
                            ticks=running.ticks,
                            agent_ticks=tally[0],
                            faults=tally[1],
                        )
                    )
            running.reset_counts()
        return reports

    def versions(self) -> dict[str, dict[str, int]]:
        """Agents per module version on this edge (for metrics and status)."""
        out: dict[str, dict[str, int]] = {}
        for name, running in self._running.items():
            counts = out.setdefault(name, {})
            for manifest, slot in (
                (running.base, running.base_slot),
                (running.target, running.target_slot),
            ):
                if manifest is not None and slot is not None:
                    n = int(np.count_nonzero(self.table.policy == slot))
                    counts[manifest.version] = counts.get(manifest.version, 0) + n
        return out
