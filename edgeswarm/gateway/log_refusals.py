"""What a gateway connection does when the durable log refuses or fails an edge's batch.

A mixin of ``GatewayConnection`` (``connection.py``), apart so that module stays one
screenful of session handling: a batch that can never be stored gets ERROR
``BATCH_REJECTED`` and the session goes on; other bytes under its number get ERROR
and BYE ``SEQ_CONFLICT``; a log that fails closes the session so the edge keeps
its batches. Each first acknowledges what committed before it.
"""

from __future__ import annotations

import logging

from edgeswarm.wire import Error, ErrorCode, Session
from edgeswarm.wire.codec import MAX_TEXT_CHARS

from .log import LogRecordRejected, LogSeqConflict
from .services import GatewayServices

__all__ = ["LogRefusals"]

logger = logging.getLogger("edgeswarm.gateway")


class LogRefusals:
    """The log's refusals and failures, answered on the session (a mixin)."""

    session: Session
    _gateway: GatewayServices
    _log_failed_once: bool

    @property
    def edge_id(self) -> str | None:
        raise NotImplementedError

    def _log(self, level: int, message: str, **fields: object) -> None:
        raise NotImplementedError

    def _send_cumulative_ack(self) -> None:
        raise NotImplementedError

    def _process(self) -> None:
        raise NotImplementedError

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
