"""When a gateway session acknowledges an edge's batches, and with how much credit (sans-I/O).

Each batch the log commits is acknowledged once: by its own ACK, or, when the
edge speaks ``ack_through``, by one cumulative ACK per commit group that
covers every batch up to its ``seq`` (batches commit in the order they came).
Every acknowledged batch extends the credit by one more batch; credit is never
taken back.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeswarm.wire import Ack

__all__ = ["Acknowledger"]


@dataclass
class Acknowledger:
    """The ACKs and the credit of one edge's session."""

    credit_limit: int = 0
    """Highest credit granted so far (WELCOME's, then each ACK's)."""
    cumulative: bool = False
    """Feature ``ack_through``: one ACK per commit group (:meth:`take`), not one per batch."""
    _acknowledged: int = 0
    _seq: int = 0
    _accepted: int | None = None
    """Observations of the batches the next cumulative ACK covers; None: none waits."""

    def committed(self, seq: int, count: int, window: int) -> Ack | None:
        """Batch ``seq`` of ``count`` observations is durable, ``window`` batches may be
        unacknowledged now: its ACK, or None when the next cumulative one covers it."""
        self._acknowledged += 1
        self.credit_limit = max(self.credit_limit, self._acknowledged + window)
        if not self.cumulative:
            return Ack(seq=seq, accepted=count, credit=self.credit_limit)
        self._seq = max(self._seq, seq)
        self._accepted = (self._accepted or 0) + count
        return None

    def take(self) -> Ack | None:
        """The cumulative ACK of the batches committed since the last one; None: none waits."""
        if self._accepted is None:
            return None
        accepted, self._accepted = self._accepted, None
        return Ack(seq=self._seq, accepted=accepted, credit=self.credit_limit)
