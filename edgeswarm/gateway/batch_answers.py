"""How a gateway session answers an edge's batches once the durable log has decided.

The log commits (or refuses) each OBS_BATCH in a background group commit and
calls back: :meth:`BatchAnswers._durable` counts a stored batch and
acknowledges it (one ACK per batch, or one cumulative ACK per commit group
with ``ack_through``, :class:`~.acks.Acknowledger`); a batch that can never
be stored gets ERROR ``BATCH_REJECTED`` and the session goes on; other bytes
under its number get ERROR + BYE ``SEQ_CONFLICT``; a log that fails closes
the session so that the edge keeps its batches. Every refusal first
acknowledges what committed before it.

A part of :class:`~.connection.GatewayConnection` (its base class), kept apart
because it is one job: the connection's dispatch stays readable.
"""

from __future__ import annotations

import logging
import time

from edgeswarm.transport.api import SessionLink
from edgeswarm.wire import Error, ErrorCode, Session
from edgeswarm.wire.codec import MAX_TEXT_CHARS

from .acks import Acknowledger
from .log import AppendResult, LogRecordRejected, LogSeqConflict
from .services import GatewayServices

__all__ = ["BatchAnswers"]

logger = logging.getLogger("edgeswarm.gateway")


class BatchAnswers:
    """ACKs and refusals of an edge's batches (a base of ``GatewayConnection``)."""

    session: Session
    _gateway: GatewayServices
    _acks: Acknowledger
    _link: SessionLink | None
    _log_failed_once: bool

    @property
    def edge_id(self) -> str | None:
        raise NotImplementedError

    def _log(self, level: int, message: str, **fields: object) -> None:
        raise NotImplementedError

    def _process(self) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _durable(
        self, outcome: AppendResult | BaseException, seq: int, count: int, size: int
    ) -> None:
        """The log committed (or failed to commit) batch ``seq``: count it and acknowledge
        it, or close. A batch that committed after its session ended (BYE, NO_CREDIT) is
        stored: it counts in STATUS like any other, only no ACK can leave any more."""
        edge_id = self.edge_id
        if edge_id is None:
            return
        if self.session.closed:
            if isinstance(outcome, AppendResult):
                self._gateway.stats.batch_stored(edge_id, outcome, count, size, at=time.time())
            return
        if isinstance(outcome, LogRecordRejected):
            self._reject(seq, outcome)
            return
        if isinstance(outcome, LogSeqConflict):
            self._conflict(seq, outcome)
            return
        if isinstance(outcome, BaseException):
            self._log_failed(seq, outcome)
            self._process()
            return
        self._gateway.stats.batch_stored(edge_id, outcome, count, size, at=time.time())
        ack = self._acks.committed(seq, count, self._gateway.credit_window())
        if ack is not None:
            self.session.send(ack)

    def _send_acks(self) -> None:
        """After a commit group's callbacks: its acks leave now, in one transmit.

        Not at the end of the loop turn: by then the loop may have read (and
        spent a millisecond on) another burst from the socket; measured at
        half load, this cut commit -> ACK transmitted from 1.8 to 0.2 ms p99.
        """
        if self.session.closed or self._link is None:
            return  # a failed group already closed the session and flushed
        self._flush()
        self._link.transmit_now()

    def _reject(self, seq: int, error: LogRecordRejected) -> None:
        """Batch ``seq`` can never be stored: ERROR ``BATCH_REJECTED``, the session goes on.

        Only this batch fails (the edge quarantines it); a cumulative ACK that
        later covers its seq does not acknowledge it (protocol, section 10).
        """
        edge_id = self.edge_id
        assert edge_id is not None
        self._gateway.stats.batch_rejected(edge_id)
        self._log(logging.WARNING, "batch rejected: it cannot be stored", seq=seq, error=str(error))
        self._send_cumulative_ack()  # what committed before it, first
        self.session.send(
            Error(code=ErrorCode.BATCH_REJECTED, message=str(error)[:MAX_TEXT_CHARS], seq=seq)
        )

    def _conflict(self, seq: int, error: LogSeqConflict) -> None:
        """Other bytes are stored under batch ``seq``: ERROR + BYE ``SEQ_CONFLICT``, after
        the ACK of what committed before it (no ACK ever covers it)."""
        edge_id = self.edge_id
        assert edge_id is not None
        self._gateway.stats.seq_conflict(edge_id)
        self._log(
            logging.WARNING,
            "sequence conflict: another batch is stored under this number"
            " (a copy of this edge's spool runs elsewhere, or it was restored)",
            seq=seq,
            error=str(error),
        )
        self._send_cumulative_ack()
        message = f"seq {seq}: another batch is stored under this number; start a new seq_epoch"
        self.session.send(Error(code=ErrorCode.SEQ_CONFLICT, message=message, seq=seq))
        self.session.close(ErrorCode.SEQ_CONFLICT, "sequence conflict")
        self._process()

    def _log_failed(self, seq: int, error: BaseException) -> None:
        self._log_failed_once = True
        logger.error(
            "durable log failed; closing session so the edge keeps its batches",
            extra={"edge_id": self.edge_id, "seq": seq, "error": str(error)},
        )
        self._send_cumulative_ack()  # what earlier groups committed is durable: say so first
        self.session.close(ErrorCode.INTERNAL_ERROR, "gateway cannot persist batches now")

    def _send_cumulative_ack(self) -> None:
        """Queue the ACK of the batches committed since the last one (``ack_through``)."""
        if not self.session.closed and (ack := self._acks.take()) is not None:
            self.session.send(ack)
