"""`StateSync`: keep one document in sync with one peer, sans-I/O.

One object per (document, peer connection), the same on edges and gateways
and between gateways. Messages are raw bytes; the wire layer frames them::

    A.sync_request()  --- state vector --->  B.handle_sync_request(sv) -> diff
    A.apply_update(diff)  <--- diff ---------
    (and the same the other way round)

After the handshake each side knows what the peer holds. From then on
:meth:`StateSync.data_to_send` returns what the peer lacks (our own edits,
and edits relayed from other peers), or None. The peer's own updates are
not tracked per update (``pycrdt.get_state(update)`` is empty for updates
that do not start at clock 0, and decoding state vectors per update would
cost more than the merge), so each of them is echoed back to it at most
once, in the next ``data_to_send``; applying it there is a no-op.

An edge that reconnects after a long time sends its state vector and
receives only the missing part, never a full resend.

Delivery is assumed reliable and ordered within one connection (a QUIC
stream); on a new connection, handshake again. Updates are idempotent and
commute, so a repeated or reordered update does no harm either way.
"""

from __future__ import annotations

from edgeswarm.state.document import SwarmDocument
from edgeswarm.state.errors import MalformedUpdate, WriterReused
from edgeswarm.state.vector import (
    decode_state_vector,
    encode_state_vector,
    merge_state_vectors,
    missing_from,
)

__all__ = ["StateSync"]


class StateSync:
    """Sync state of one document with one peer."""

    def __init__(self, document: SwarmDocument, *, own_writes_only: bool = False) -> None:
        self.document = document
        """The document kept in sync."""
        self.own_writes_only = own_writes_only
        """Send the peer only the items of our own writer (an edge: a gateway refuses
        items of writers not bound to the sender, ``ownership.py``)."""
        self._peer: dict[int, int] | None = None
        self._sent_at: bytes | None = None
        """Our state vector when the peer last got everything we had."""
        self.bytes_sent = 0
        """Update bytes handed out for this peer."""
        self.bytes_received = 0
        """Update bytes accepted from this peer."""

    @property
    def synced(self) -> bool:
        """Whether the peer's state vector is known (its sync request was handled)."""
        return self._peer is not None

    def sync_request(self) -> bytes:
        """Our state vector, to send to the peer when the connection opens."""
        return self.document.state_vector()

    def handle_sync_request(self, state_vector: bytes) -> bytes:
        """The update the peer lacks, given its ``state_vector``.

        Raises :class:`~edgeswarm.state.errors.MalformedStateVector` for bad bytes
        and :class:`WriterReused` if the peer holds writes of our client id past
        our own (we restarted without our state but kept our incarnation).
        """
        peer = decode_state_vector(state_vector)
        ours = decode_state_vector(self.document.state_vector())
        own = ours.get(self.document.client_id, 0)
        theirs = peer.get(self.document.client_id, 0)
        if 0 < own < theirs:
            raise WriterReused(
                f"peer holds clock {theirs} of client {self.document.client_id}, we hold {own}"
            )
        update = self.document.encode_update(self._wanted(peer, ours))
        self._peer = merge_state_vectors(peer, ours)
        self._sent_at = None
        self.bytes_sent += len(update)
        return update

    def _wanted(self, peer: dict[int, int], ours: dict[int, int]) -> bytes:
        """The state vector to diff against: the peer's, and with ``own_writes_only``
        ours for every other writer (so only our own items go)."""
        if not self.own_writes_only:
            return encode_state_vector(peer)
        own = self.document.client_id
        held = {c: clock for c, clock in ours.items() if c != own}
        return encode_state_vector(merge_state_vectors(peer, held))

    def apply_update(self, update: bytes) -> None:
        """Merge an update (handshake reply or later) from the peer.

        Raises :class:`MalformedUpdate` and leaves the document untouched if the
        bytes do not decode.
        """
        if not isinstance(update, bytes):
            raise MalformedUpdate(f"update must be bytes, got {type(update).__name__}")
        self.document.apply_update(update)
        self.bytes_received += len(update)

    def data_to_send(self) -> bytes | None:
        """What the peer lacks now, or None (also None before the handshake)."""
        if self._peer is None:
            return None
        raw = self.document.state_vector()
        if raw == self._sent_at:
            return None  # nothing new since the last send (skips decoding)
        ours = decode_state_vector(raw)
        self._sent_at = raw
        if not missing_from(self._peer, ours):
            return None
        update = self.document.encode_update(self._wanted(self._peer, ours))
        self._peer = merge_state_vectors(self._peer, ours)
        self.bytes_sent += len(update)
        return update
