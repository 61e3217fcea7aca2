"""The module registry replicated to peer gateways (feature ``registry``, ``docs/modules.md``).

Every session with a peer gateway that negotiated feature ``registry`` (the
outbound ``PeerGatewayLink`` and the inbound ``GatewayConnection`` alike) is
a :class:`RegistryPeer`. On either side:

- once the session is up, and whenever this registry changed (a publish or
  rollout by ``edgeswarm agents``, a rollout decision of this gateway, something
  replicated), REGISTRY_INDEX goes to every peer: every ``name@version`` held
  with its digest, every deployment record with its stamp. That is the
  anti-entropy: whatever a peer missed while the link was down it learns from
  the first index of the next session;
- of a peer's index, the versions this registry lacks are fetched, one at a
  time per peer, with REGISTRY_REQUEST / REGISTRY_CHUNK in chunks of
  :data:`~edgeswarm.registry.replica.CHUNK_BYTES` (:class:`ModuleTransfer`
  bounds and checks them), then **published like any local publish**
  (``ModuleStore.publish``: signature, this gateway's trust policy, digest
  and size, ABI). A peer is authenticated, never trusted to skip a check;
- the peer's deployment records replace ours when their stamp is greater
  (``ModuleStore.apply_deployment``), once every version they name is held
  here; a record waiting for a version being fetched is kept until it arrives.

A refusal (a module that fails admission, a chunk that does not fit, a
version held with another digest, a record naming a version refused or
unknown) is a typed error, one warning log line and
``edgeswarm_gateway_module_replication_refused_total{reason}``; nothing is
stored, the link goes on, and the same version is not asked for again until
this gateway's trust policy changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry

from edgeswarm.registry import (
    RegistryError,
    RegistryStoreError,
    RolloutError,
    TrustPolicy,
    UnknownModuleError,
)
from edgeswarm.registry.replica import (
    CHUNK_BYTES,
    DeploymentRecord,
    ModuleRef,
    ModuleTransfer,
    Stamp,
    missing,
)
from edgeswarm.wire import (
    DeploymentEntry,
    IndexEntry,
    RegistryChunk,
    RegistryIndex,
    RegistryRequest,
)

from .module_distribution import POLL_INTERVAL_S, ModuleDistribution
from .replication_metrics import ReplicationMetrics, refusal_reason

__all__ = ["ModuleReplication", "RegistryPeer"]

logger = logging.getLogger("edgeswarm.gateway")

RegistryFrame = RegistryIndex | RegistryRequest | RegistryChunk


class RegistryPeer(Protocol):
    """A session with a peer gateway that speaks feature ``registry``."""

    @property
    def registry_peer_id(self) -> str:
        """The peer gateway's id (for logs)."""

    def send_registry_frame(self, frame: RegistryFrame) -> None:
        """Queue ``frame`` on the session; nothing once it is closed."""


@dataclass(eq=False)
class _Peer:
    """What this gateway knows of one peer session."""

    holds: dict[tuple[str, str], ModuleRef] = field(default_factory=dict)
    """The versions its last index listed."""
    queue: deque[ModuleRef] = field(default_factory=deque)
    transfer: ModuleTransfer | None = None
    waiting: dict[str, DeploymentRecord] = field(default_factory=dict)
    """Its records that name a version it holds and we lack (being fetched, or refused
    until our trust policy changes), by module: applied when the version arrives."""


def _record(entry: DeploymentEntry) -> DeploymentRecord:
    stamp = Stamp(entry.counter, entry.origin)
    return DeploymentRecord(
        entry.name, entry.version, entry.previous, entry.rollout, entry.plan, stamp
    )


def _entry(record: DeploymentRecord) -> DeploymentEntry:
    return DeploymentEntry(
        record.name,
        record.version,
        record.previous,
        record.rollout,
        record.plan,
        record.stamp.counter,
        record.stamp.origin,
    )


class ModuleReplication:
    """This gateway's registry kept in step with its peer gateways' (see the docstring)."""

    def __init__(
        self,
        distribution: ModuleDistribution,
        *,
        registry: CollectorRegistry,
        interval_s: float = POLL_INTERVAL_S,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        """``chunk_bytes``: bytes asked for per REGISTRY_REQUEST."""
        self.distribution = distribution
        self.chunk_bytes = chunk_bytes
        self.store = distribution.service.store
        self.metrics = ReplicationMetrics(registry)
        self.interval_s = interval_s
        self._peers: dict[RegistryPeer, _Peer] = {}
        self._refused: set[ModuleRef] = set()
        """Versions refused here: not asked for again until the trust policy changes."""
        self._refused_records: set[DeploymentRecord] = set()
        """Records refused here: logged and counted once, not at every index."""
        self._trust: TrustPolicy | None = None
        self._seen: tuple[int, int] | None = None
        self.metrics.peers.set_function(lambda: len(self._peers))
        self.metrics.pending.set_function(self._pending)

    # --- sessions ------------------------------------------------------------

    def attach(self, peer: RegistryPeer) -> None:
        """A session with a peer gateway negotiated ``registry``: send it our index."""
        self._peers[peer] = _Peer()
        self._send_index([peer])

    def detach(self, peer: RegistryPeer) -> None:
        """The session ended: its transfer is dropped; what it alone offered is asked of
        the others (if they hold it), or waits for its next session's index."""
        if self._peers.pop(peer, None) is not None:
            for other, state in self._peers.items():
                self._plan(other, state)

    def receive(self, peer: RegistryPeer, frame: RegistryFrame) -> None:
        """A frame of feature ``registry`` from ``peer``."""
        state = self._peers.get(peer)
        if state is None:
            return
        try:
            match frame:
                case RegistryIndex():
                    self._index(peer, state, frame)
                case RegistryRequest():
                    self._request(peer, frame)
                case RegistryChunk():
                    self._chunk(peer, state, frame)
        except RegistryError as exc:  # modules.db cannot be read or written now
            self.distribution.store_failed(exc)

    # --- change detection --------------------------------------------------------

    async def run(self) -> None:
        """Send the index again whenever ``modules.db`` changed, until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            self.poll()

    def poll(self) -> bool:
        """Whether the registry changed since the last index (then it was sent)."""
        try:
            seen = (self.store.data_version(), self.distribution.changes)
        except RegistryError as exc:
            self.distribution.store_failed(exc)
            return False
        if seen == self._seen:
            return False
        self._seen = seen
        self._send_index(list(self._peers))
        self._check_trust()
        for peer, state in list(self._peers.items()):  # a new trust rule: fetch again
            self._plan(peer, state)
        return True

    def _check_trust(self) -> None:
        """Forget the refusals once this gateway's trust policy changed."""
        trust = self.store.trust_policy()
        if trust != self._trust:
            self._trust, self._refused, self._refused_records = trust, set(), set()

    def _changed_here(self) -> None:
        """This process changed ``modules.db``: edges and peers hear of it."""
        self.distribution.reload()
        self._seen = None
        self.poll()

    def _send_index(self, peers: Iterable[RegistryPeer]) -> None:
        index = RegistryIndex(
            modules=tuple(IndexEntry(n, v, d) for (n, v), d in sorted(self.store.refs().items())),
            deployments=tuple(_entry(r) for r in self.store.deployment_records()),
        )
        for peer in peers:
            self.metrics.indexes_sent.inc()
            peer.send_registry_frame(index)

    # --- receiving -----------------------------------------------------------------

    def _index(self, peer: RegistryPeer, state: _Peer, index: RegistryIndex) -> None:
        self._check_trust()
        state.holds = {
            (e.name, e.version): ModuleRef(e.name, e.version, e.digest) for e in index.modules
        }
        self._plan(peer, state)
        applied = False
        for entry in index.deployments:
            applied |= self._deployment(peer, state, _record(entry))
        if applied:
            self._changed_here()

    def _plan(self, peer: RegistryPeer, state: _Peer) -> None:
        """Queue every version ``peer`` holds that we lack and nobody is fetching."""
        wanted, conflicts = missing(state.holds.values(), self.store.refs())
        for ref in conflicts:
            if ref not in self._refused:
                message = (
                    f"{ref.name}@{ref.version} is held here with another digest than {ref.digest}"
                )
                self._refuse(peer, ref, "version_conflict", message)
        busy = self._fetching()
        for ref in wanted:
            if ref not in self._refused and ref not in busy:
                state.queue.append(ref)
        if state.transfer is None:  # one at a time: a transfer under way goes on by itself
            self._next(peer, state)

    def _next(self, peer: RegistryPeer, state: _Peer) -> None:
        """Ask for the next chunk of the transfer under way (after its last chunk came), or
        start the next queued version."""
        if state.transfer is None:
            if not state.queue:
                return
            state.transfer = ModuleTransfer(state.queue.popleft(), chunk_bytes=self.chunk_bytes)
        ref = state.transfer.ref
        offset, length = state.transfer.next_offset_length()
        peer.send_registry_frame(RegistryRequest(ref.name, ref.version, offset, length))

    def _deployment(self, peer: RegistryPeer, state: _Peer, record: DeploymentRecord) -> bool:
        """Apply one of the peer's records if it wins; whether it changed anything."""
        try:
            applied = self.store.apply_deployment(record, actor=f"peer:{peer.registry_peer_id}")
        except UnknownModuleError as exc:
            names = {(record.name, v) for v in record.versions()}
            if names & state.holds.keys():  # the peer has it: it may yet come (trust changes)
                state.waiting[record.name] = record
            if not names & {(ref.name, ref.version) for ref in self._fetching()}:
                self._refuse_record(peer, record, "deployment_unknown_version", str(exc))
            return False
        except RolloutError as exc:
            self._refuse_record(peer, record, "deployment_invalid", str(exc))
            return False
        state.waiting.pop(record.name, None)
        if applied:
            self.metrics.deployments_applied.inc()
            logger.info(
                "deployment replicated from peer gateway",
                extra={
                    "peer_id": peer.registry_peer_id,
                    "module_name": record.name,
                    "version": record.version,
                    "rollout": record.rollout,
                    "stamp": list(record.stamp),
                },
            )
        return applied

    def _request(self, peer: RegistryPeer, request: RegistryRequest) -> None:
        try:
            module = self.store.module(request.name, request.version)
            blob = self.store.blob(module.manifest.digest)
        except UnknownModuleError as exc:
            self.metrics.refused.labels("request_unknown").inc()
            logger.warning(
                "registry request from peer gateway for a module not held",
                extra={"peer_id": peer.registry_peer_id, "error": str(exc)},
            )
            return
        if request.offset >= len(blob):
            self.metrics.refused.labels("request_past_end").inc()
            return
        data = blob[request.offset : request.offset + request.length]
        self.metrics.bytes_sent.inc(len(data))
        peer.send_registry_frame(
            RegistryChunk(
                request.name,
                request.version,
                module.manifest_bytes,
                request.offset,
                len(blob),
                data,
            )
        )

    def _chunk(self, peer: RegistryPeer, state: _Peer, chunk: RegistryChunk) -> None:
        transfer = state.transfer
        if transfer is None or (chunk.name, chunk.version) != transfer.ref[:2]:
            self.metrics.refused.labels("unexpected_chunk").inc()
            logger.warning(
                "registry chunk from peer gateway not asked for",
                extra={"peer_id": peer.registry_peer_id, "module_name": chunk.name},
            )
            return
        try:
            done = transfer.receive(chunk.manifest, chunk.offset, chunk.size, chunk.data)
        except RegistryError as exc:
            state.transfer = None
            self._refuse(peer, transfer.ref, refusal_reason(exc), str(exc))
            self._next(peer, state)
            return
        self.metrics.bytes_received.inc(len(chunk.data))
        if not done:
            self._next(peer, state)
            return
        state.transfer = None
        self._publish(peer, transfer)  # may start the next transfer (the index is re-planned)
        if state.transfer is None:
            self._next(peer, state)

    def _publish(self, peer: RegistryPeer, transfer: ModuleTransfer) -> None:
        assert transfer.manifest_bytes is not None
        ref = transfer.ref
        try:
            self.store.publish(
                transfer.manifest_bytes, transfer.blob(), actor=f"peer:{peer.registry_peer_id}"
            )
        except RegistryError as exc:
            if isinstance(exc, RegistryStoreError):
                raise
            self._refuse(peer, ref, refusal_reason(exc), str(exc))
            return
        self.metrics.modules_received.inc()
        logger.info(
            "module replicated from peer gateway",
            extra={
                "peer_id": peer.registry_peer_id,
                "module_name": ref.name,
                "version": ref.version,
                "digest": ref.digest,
                "bytes": transfer.received,
            },
        )
        for other, state in list(self._peers.items()):
            for record in list(state.waiting.values()):
                if ref.name == record.name:
                    self._deployment(other, state, record)
        self._changed_here()

    # --- refusals --------------------------------------------------------------------

    def _refuse(self, peer: RegistryPeer, ref: ModuleRef, reason: str, message: str) -> None:
        self._refused.add(ref)
        self.metrics.refused.labels(reason).inc()
        logger.warning(
            "module from peer gateway refused",
            extra={
                "peer_id": peer.registry_peer_id,
                "module_name": ref.name,
                "version": ref.version,
                "digest": ref.digest,
                "reason": reason,
                "error": message,
            },
        )
        for state in self._peers.values():  # their records wait on: trust may change
            record = state.waiting.get(ref.name)
            if record is not None and ref.version in record.versions():
                self._refuse_record(peer, record, "deployment_unknown_version", message)

    def _refuse_record(
        self, peer: RegistryPeer, record: DeploymentRecord, reason: str, message: str
    ) -> None:
        if record in self._refused_records:
            return
        self._refused_records.add(record)
        self.metrics.refused.labels(reason).inc()
        logger.warning(
            "deployment from peer gateway refused",
            extra={
                "peer_id": peer.registry_peer_id,
                "module_name": record.name,
                "version": record.version,
                "reason": reason,
                "error": message,
            },
        )

    def _fetching(self) -> set[ModuleRef]:
        """Versions queued or being fetched from any peer (two sessions with the same
        gateway, or two gateways that hold it: each version is fetched once)."""
        busy = {ref for state in self._peers.values() for ref in state.queue}
        busy |= {s.transfer.ref for s in self._peers.values() if s.transfer is not None}
        return busy

    def _pending(self) -> int:
        """Versions queued or being fetched, over every peer (progress)."""
        return sum(len(s.queue) + (s.transfer is not None) for s in self._peers.values())
