"""The one state-frame handler: a document kept in sync over one peer session, in frames.

:class:`~edgeswarm.state.sync.StateSync` speaks state vectors and updates as
bytes; a :class:`StateSession` speaks the protocol's frames around it
(``docs/protocol.md``, section 9), the same way wherever a session carries
state: on the gateway (one per state peer), on an edge (one per uplink
session), in an admin's read-only mirror and on a peer gateway's link.

- :meth:`StateSession.sync_request` is the STATE_SYNC to send once the
  session is READY;
- :meth:`StateSession.receive` answers a STATE_SYNC with the STATE_UPDATE the
  peer lacks, and merges a STATE_UPDATE (``on_update`` hears of each update
  that changed the document);
- :meth:`StateSession.data_to_send` is what the peer lacks since, or None.

A malformed update or state vector (a :class:`RemoteStateError`) is refused:
the answer is an ERROR frame with the error's ``error_code``, a warning is
logged, ``on_refused`` counts it, and the document is untouched. A peer
holding more of our writer's history than we do (:class:`WriterReused`:
only if our incarnation file was tampered with) gets INTERNAL_ERROR.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from edgeswarm.wire import (
    Error,
    ErrorCode,
    StateSyncRequest,
    StateSyncRequested,
    StateUpdate,
    StateUpdateReceived,
)
from edgeswarm.wire.codec import MAX_TEXT_CHARS

from .document import SwarmDocument
from .errors import RemoteStateError, StoreError, WriterReused
from .sync import StateSync

__all__ = ["StateFrame", "StateSession"]

logger = logging.getLogger("edgeswarm.state")

StateFrame = StateUpdate | Error
"""What a state session sends back."""


class StateSession:
    """One document, one peer session: state frames in, state frames out."""

    def __init__(
        self,
        document: SwarmDocument,
        *,
        peer_id: str,
        on_update: Callable[[bytes], None] | None = None,
        on_refused: Callable[[str, ErrorCode], None] | None = None,
        check: Callable[[bytes], None] | None = None,
        own_writes_only: bool = False,
        on_store_error: Callable[[StoreError], None] | None = None,
    ) -> None:
        self.document = document
        self.peer_id = peer_id
        """The peer, for logs."""
        self.on_update = on_update
        """Called with every update of the peer that changed the document."""
        self.on_refused = on_refused
        """Called with (peer id, error code) for every frame refused."""
        self.check = check
        """Run on every update of the peer before it is merged; it raises a
        :class:`RemoteStateError` to refuse it (the gateway's ``WriteGuard``)."""
        self.on_store_error = on_store_error
        """Called when ``on_update`` could not persist an update (a :class:`StoreError`):
        the peer is then answered with ERROR ``STATE_STORE_ERROR``."""
        self.sync = StateSync(document, own_writes_only=own_writes_only)
        self.updates_merged = 0
        """STATE_UPDATE frames of the peer merged (duplicates included)."""
        self.updates_sent = 0
        """STATE_UPDATE frames handed out (handshake answers included)."""
        self.refused = 0
        """Malformed updates and state vectors refused."""

    @property
    def synced(self) -> bool:
        """Whether the peer's state vector is known (its STATE_SYNC was answered)."""
        return self.sync.synced

    def sync_request(self) -> StateSyncRequest:
        """The STATE_SYNC to send when the session is READY: our state vector."""
        return StateSyncRequest(state_vector=self.sync.sync_request())

    def receive(self, event: StateSyncRequested | StateUpdateReceived) -> list[StateFrame]:
        """Handle a state frame of the peer; the frames to send back (often none)."""
        if isinstance(event, StateSyncRequested):
            try:
                diff = self.sync.handle_sync_request(event.state_vector)
            except RemoteStateError as exc:
                return [self._refuse(exc)]
            except WriterReused as exc:
                logger.error(
                    "swarm state writer reused", extra={"peer_id": self.peer_id, "error": str(exc)}
                )
                return [Error(code=ErrorCode.INTERNAL_ERROR, message=str(exc)[:MAX_TEXT_CHARS])]
            self.updates_sent += 1
            return [StateUpdate(update=diff)]
        before = self.document.state_vector()
        try:
            if self.check is not None:
                self.check(event.update)
            self.sync.apply_update(event.update)
        except RemoteStateError as exc:
            return [self._refuse(exc)]
        self.updates_merged += 1
        if self.on_update is not None and self.document.state_vector() != before:
            try:
                self.on_update(event.update)  # echoes and duplicates change nothing
            except StoreError as exc:
                return self._store_failed(exc)
        return []

    def _store_failed(self, error: StoreError) -> list[StateFrame]:
        """Merged but not persisted (a full disk): log, count, tell the peer when asked."""
        logger.error(
            "state store failed: update merged, not persisted",
            extra={"peer_id": self.peer_id, "error": str(error)},
        )
        if self.on_store_error is None:
            return []
        self.on_store_error(error)
        message = f"merged but not persisted: {error}"[:MAX_TEXT_CHARS]
        return [Error(code=ErrorCode.STATE_STORE_ERROR, message=message)]

    def data_to_send(self) -> StateUpdate | None:
        """STATE_UPDATE with what the peer lacks now, or None (also before the handshake)."""
        update = self.sync.data_to_send()
        if update is None:
            return None
        self.updates_sent += 1
        return StateUpdate(update=update)

    def _refuse(self, error: RemoteStateError) -> Error:
        self.refused += 1
        code = error.error_code
        logger.warning(
            "state frame refused",
            extra={"peer_id": self.peer_id, "code": code.name, "error": str(error)},
        )
        if self.on_refused is not None:
            self.on_refused(self.peer_id, code)
        return Error(code=code, message=f"{code.name.lower()}: {error}"[:MAX_TEXT_CHARS])
