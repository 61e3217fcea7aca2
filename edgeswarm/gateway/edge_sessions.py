"""Which session speaks for each edge, and in which sequence epoch.

One edge id, one live session: when an edge authenticates while a session of
the same id is still open (the edge restarted before the old connection timed
out, or a second process holds the same key: a cloned SD card), the older
session is closed with BYE ``SESSION_REPLACED``, logged and counted
(``edgeswarm_gateway_sessions_replaced_total``); batches are never quietly
deduplicated between two live processes.

An edge's ``seq`` numbers belong to the sequence epoch of its spool (HELLO
``seq_epoch``, negotiated as feature ``seq_epoch``; a v2 edge without it is
epoch 0). The log stores them as ``base + seq`` (``log/holdings.py``): an
edge whose spool is gone comes back with a new epoch and a fresh base above
everything it ever sent, instead of colliding with its old numbers (before,
WELCOME's ``resume_seq`` made it drop its new batches as already stored). A
session of an epoch older than the edge's newest is refused with
``STALE_SEQ_EPOCH``: its numbers would meet the newer epoch's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from edgeswarm.wire import ErrorCode, Redirect

from .log import EpochStanding, LogWriteError, ObservationLog
from .stats import GatewayStats

__all__ = ["Admitted", "EdgeSessions", "LiveSession", "Refused"]

logger = logging.getLogger("edgeswarm.gateway")


class LiveSession(Protocol):
    """A session that may be replaced by a newer one of the same edge."""

    def replace(self) -> None:
        """Close with BYE ``SESSION_REPLACED`` (a newer session took over)."""

    def redirect(self, redirect: Redirect) -> bool:
        """REDIRECT then BYE when the edge speaks feature ``redirect``; True if sent."""


@dataclass(frozen=True)
class Admitted:
    """The edge may go on: where its numbers are stored, where it resumes."""

    base: int
    """Stored seq = base + the edge's seq."""
    resume_seq: int
    """WELCOME's ``resume_seq``: every seq 1..resume_seq of this epoch is stored."""


@dataclass(frozen=True)
class Refused:
    """The edge is refused with ``code``."""

    code: ErrorCode
    reason: str


class EdgeSessions:
    """The live session of each edge, and their sequence epochs at the log."""

    def __init__(self, log: ObservationLog, stats: GatewayStats) -> None:
        self._log = log
        self._stats = stats
        self._live: dict[str, LiveSession] = {}

    def admit(
        self, session: LiveSession, edge_id: str, seq_epoch: int, *, peer: str
    ) -> Admitted | Refused:
        """An edge authenticated: check its epoch, replace its older session, register."""
        if self._log.epoch_standing(edge_id, seq_epoch) is EpochStanding.STALE:
            return Refused(
                ErrorCode.STALE_SEQ_EPOCH,
                f"seq_epoch {seq_epoch} of {edge_id!r} is older than one admitted since:"
                " this spool was replaced by a newer one (see docs/operations.md)",
            )
        previous = self._live.get(edge_id)
        if previous is not None and previous is not session:
            self._stats.session_replaced()
            logger.warning(
                "session replaced by a newer one of the same edge",
                extra={"edge_id": edge_id, "peer": peer, "seq_epoch": seq_epoch},
            )
            previous.replace()
        try:
            base = self._log.open_epoch(edge_id, seq_epoch)
        except LogWriteError as exc:
            self._stats.storage_error("observation_log")
            logger.error(
                "cannot register a sequence epoch",
                extra={"edge_id": edge_id, "path": str(self._log.path), "error": str(exc)},
            )
            return Refused(ErrorCode.INTERNAL_ERROR, "the gateway cannot write its log now")
        self._live[edge_id] = session
        return Admitted(base, self._log.high_water(edge_id, base) - base)

    def live_edges(self) -> frozenset[str]:
        """Edges with a live session now."""
        return frozenset(self._live)

    def live_sessions(self) -> list[tuple[str, LiveSession]]:
        """Each edge with a live session, and that session."""
        return list(self._live.items())

    def ended(self, session: LiveSession, edge_id: str) -> None:
        """``session`` of ``edge_id`` is over."""
        if self._live.get(edge_id) is session:
            del self._live[edge_id]
