"""The gateway's shared swarm state: one document, persisted, synced with every peer.

Every peer session that negotiated the ``state`` feature (edges, admins,
other gateways, in either direction) is a *state peer* with its own
:class:`~edgeswarm.state.StateSession` (the one state-frame handler). The
flow, per session (``docs/protocol.md``, State)::

    peer  --STATE_SYNC(sv)-->   service.receive() -> STATE_UPDATE(what the peer lacks)
    peer  <--STATE_SYNC(sv)--   sent by whoever holds the service's end, once READY
    peer  --STATE_UPDATE(u)-->  service.receive(): apply, log to the store, on_change()
    every synced peer <--       service.broadcast(): what each one lacks (state vectors)

Every update is checked before it is merged (``state.WriteGuard``): a peer
writes only entries of the writer ids bound to it (``state_writers``; None:
a peer gateway, which replicates everything), and a read-only role
(``state_may_write`` false: admins, inference nodes) changes nothing. A
malformed, foreign or read-only update, or a malformed state vector, is
refused (``StateSession``): the peer gets an ERROR frame (101-104), a warning
is logged, ``on_refused`` counts it, and the document is untouched. Other
peers never notice.

Sans-I/O apart from the store's files: callers feed events in and send the
frames they get back; the owner arms a timer when ``on_change`` fires and
calls :meth:`StateService.broadcast` (one merged update per peer per timer,
not one per received update).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from edgeswarm.resource import Resource
from edgeswarm.state import (
    StateFrame,
    StateSession,
    StoreError,
    StoreFsyncPolicy,
    SwarmSnapshotDict,
    WriteGuard,
    Writers,
    open_document,
)
from edgeswarm.wire import (
    ErrorCode,
    StateSyncRequest,
    StateSyncRequested,
    StateUpdateReceived,
)

__all__ = ["StatePeer", "StateService"]

logger = logging.getLogger("edgeswarm.gateway")


class StatePeer(Protocol):
    """A session the document is synced over."""

    @property
    def state_peer_id(self) -> str:
        """Name of the peer, for logs."""
        ...

    def send_state_update(self, update: bytes) -> None:
        """Queue a STATE_UPDATE to the peer."""
        ...

    @property
    def state_writers(self) -> Writers:
        """Writer ids the peer may write as; None: any (a peer gateway)."""
        ...

    @property
    def state_may_write(self) -> bool:
        """Whether the peer's role may change the document at all."""
        ...


class StateService(Resource):
    """The gateway's document, its store, and one sync per connected state peer."""

    def __init__(
        self,
        directory: Path,
        *,
        writer_id: str,
        fsync: StoreFsyncPolicy = "interval",
        on_change: Callable[[], None] | None = None,
        on_refused: Callable[[str | None, str], None] | None = None,
        on_store_error: Callable[[], None] | None = None,
    ) -> None:
        self.document, self.store, self.load_report = open_document(
            directory, writer_id, fsync=fsync
        )
        self.guard = WriteGuard(self.document)
        """Checks every peer's update by its effect before it is merged."""
        self.on_change = on_change
        """Called after an update changed the document (arm the broadcast timer)."""
        self.on_refused = on_refused
        """Called with (peer id, error code name) for every refused frame."""
        self.on_store_error = on_store_error
        """Called when an update could not be persisted (the peer got STATE_STORE_ERROR)."""
        self._links: dict[StatePeer, StateSession] = {}
        self.updates_applied = 0
        """Updates that changed the document."""
        self.updates_refused = 0
        """Malformed updates and state vectors refused."""
        if self.load_report.snapshot_bytes or self.load_report.records_replayed:
            logger.info(
                "swarm state loaded",
                extra={
                    "snapshot_bytes": self.load_report.snapshot_bytes,
                    "records": self.load_report.records_replayed,
                    "dropped_bytes": self.load_report.dropped_bytes,
                },
            )

    @property
    def peers(self) -> int:
        """State peers attached now."""
        return len(self._links)

    def sync_request(self, peer: StatePeer) -> StateSyncRequest:
        """Attach ``peer`` and return the STATE_SYNC to send it when its session is READY."""
        return self._link(peer).sync_request()

    def detach(self, peer: StatePeer) -> None:
        """The peer's session ended."""
        self._links.pop(peer, None)

    def receive(
        self, peer: StatePeer, event: StateSyncRequested | StateUpdateReceived
    ) -> list[StateFrame]:
        """Handle a state frame from ``peer``; returns the frames to send it back."""
        return self._link(peer).receive(event)

    def broadcast(self) -> int:
        """Hand every synced peer what it lacks; returns the number of updates sent."""
        sent = 0
        for peer, link in list(self._links.items()):
            frame = link.data_to_send()
            if frame is not None:
                peer.send_state_update(frame.update)
                sent += 1
        return sent

    def snapshot(self) -> SwarmSnapshotDict:
        """Plain-data copy of the document."""
        return self.document.snapshot()

    def close(self) -> None:
        """Write a snapshot (bounds the next start's replay) and close the store; a
        failure is logged (the update log still holds everything it could)."""
        self._links.clear()
        try:
            self.store.compact(self.document)
        except StoreError as exc:
            logger.error("state store failed at close", extra={"error": str(exc)})
            self._store_failed(exc)
        try:
            self.store.close()
        except StoreError as exc:
            logger.error("state store failed at close", extra={"error": str(exc)})
            self._store_failed(exc)

    # internals

    def _link(self, peer: StatePeer) -> StateSession:
        link = self._links.get(peer)
        if link is None:
            link = self._links[peer] = StateSession(
                self.document,
                peer_id=peer.state_peer_id,
                on_update=self._applied,
                on_refused=self._refused,
                check=functools.partial(
                    self._check, writers=peer.state_writers, may_write=peer.state_may_write
                ),
                on_store_error=self._store_failed,
            )
        return link

    def _check(self, update: bytes, *, writers: Writers, may_write: bool) -> None:
        self.guard.check(update, writers=writers, may_write=may_write)

    def _applied(self, update: bytes) -> None:
        """A peer's update changed the document: log it to the store, tell the owner."""
        self.updates_applied += 1
        self.store.append(update)
        if self.store.needs_compaction:
            self.store.compact(self.document)
        if self.on_change is not None:
            self.on_change()

    def _store_failed(self, error: StoreError) -> None:
        if self.on_store_error is not None:
            self.on_store_error()

    def _refused(self, peer_id: str, code: ErrorCode) -> None:
        self.updates_refused += 1
        if self.on_refused is not None:
            self.on_refused(peer_id, code.name)
