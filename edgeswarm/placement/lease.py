"""The placement lease: an edge steps its placed agents only while the gateway vouches
for it, so a partition never leaves an agent stepping on two edges. Pure, sans-I/O.

The gateway grants a lease in WELCOME (``lease_ms``, ``lease_ticks``; docs/protocol.md
13.5). The edge holds it while both hold:

- **time**: less than ``lease_ms`` has passed, on the edge's monotonic clock, since it
  *sent* the newest request the gateway answered (HELLO answered by WELCOME, an
  OBS_BATCH by the ACK that covers it). The gateway received that request after it was
  sent, so its own ``--edge-timeout``, counted from when it lost the session (after the
  last packet it received), ends later than the lease: no clock synchronisation needed;
- **ticks**: the edge is at most ``lease_ticks`` ticks ahead of the last tick whose
  batches were all acknowledged. An agent is then never stepped more than
  ``lease_ticks`` past the highest tick the gateway logged for it, so an agent re-placed
  from a silent edge resumes ``lease_ticks`` past that and no ``(agent, tick)`` is
  stepped on two edges, even once the silent edge's spool is delivered after a heal;
- **assignment**: the edge has received its assignment in the current session (after a
  reconnect, it waits for the ASSIGN that says what it still owns).

Without a lease (the time one ran out or no assignment yet) the edge is *fenced*: it
steps none of its placed agents. Past the tick bound it waits for acknowledgements
(back-pressure, like a full credit window).

The rule the gateway keeps: ``--edge-timeout`` ≥ lease + :data:`LEASE_MARGIN_S`
(:func:`lease_for` checks it), so every lease it granted has run out, with a tick's
worth of margin, before it re-places an edge's agents.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from .errors import PlacementError

__all__ = [
    "DEFAULT_LEASE_TICKS",
    "LEASE_MARGIN_S",
    "Lease",
    "LeaseError",
    "LeaseTerms",
    "Standing",
    "lease_for",
]

LEASE_MARGIN_S = 0.25
"""Least time between a lease's end and the gateway's ``--edge-timeout``: covers the
tick under way when the lease ends (the edge checks it between ticks) and the gateway's
own timer; clock rates differ by parts per million, nothing to cover there."""
DEFAULT_LEASE_TICKS = 50
"""Default of ``--lease-ticks``: 1 s at 50 Hz, far above the ack lag of a healthy link
(an edge at ``--tick-hz 0`` keeps 2 ticks unacknowledged)."""


class LeaseError(PlacementError, ValueError):
    """Lease options that break the rule above (a usage error on the gateway's CLI)."""


@dataclass(frozen=True)
class LeaseTerms:
    """What the gateway grants in WELCOME."""

    seconds: float
    """How long after sending an answered request the edge may step."""
    ticks: int
    """Ticks the edge may be ahead of its last fully acknowledged tick."""

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.seconds * 1e3))


def lease_for(edge_timeout_s: float, lease_s: float | None, lease_ticks: int) -> LeaseTerms:
    """The terms a gateway grants: ``lease_s`` (default: half of ``edge_timeout_s``)
    checked against ``edge_timeout_s``; :class:`LeaseError` with a one-line reason."""
    seconds = edge_timeout_s / 2 if lease_s is None else lease_s
    if lease_ticks < 1:
        raise LeaseError(f"--lease-ticks must be at least 1, got {lease_ticks}")
    if seconds <= 0 or seconds + LEASE_MARGIN_S > edge_timeout_s:
        raise LeaseError(
            f"--lease {seconds:g} must be above 0 and at most --edge-timeout"
            f" ({edge_timeout_s:g}) minus {LEASE_MARGIN_S:g} s: the gateway re-places an"
            " edge's agents only after every lease it granted has run out"
        )
    return LeaseTerms(seconds=seconds, ticks=lease_ticks)


class Standing(StrEnum):
    """Whether the edge may step its placed agents now."""

    HELD = "held"
    """Step."""
    AHEAD = "ahead"
    """``lease_ticks`` ahead of the acknowledgements: wait for them."""
    EXPIRED = "expired"
    """The time lease ran out: fenced until a new session's assignment."""
    UNASSIGNED = "unassigned"
    """A session without its assignment yet: fenced until it arrives."""


class Lease:
    """The edge's side: fed the session's events, says whether a tick may step.

    Times are the caller's monotonic clock; batch numbers are the spool's ``seq``.
    """

    def __init__(self) -> None:
        self.terms: LeaseTerms | None = None
        """This session's terms (None: no session, or a gateway that grants none)."""
        self.expires_at = float("-inf")
        self.assigned = False
        """The current session's assignment arrived."""
        self._acked_seq = 0
        self._ticks: deque[tuple[int, int]] = deque()
        """(tick, last seq spooled by then), for ticks not yet all acknowledged."""
        self._acked_tick: int | None = None
        """The last tick whose batches (and all before) were acknowledged."""
        self.expiries = 0
        """Times the time lease ran out while held (``edgeswarm_edge_lease_expired_total``)."""
        self._was: Standing | None = None

    def session_started(self, terms: LeaseTerms | None, hello_sent_at: float) -> None:
        """WELCOME answered the HELLO sent at ``hello_sent_at``: new terms; the
        assignment of this session has still to come."""
        self.terms = terms
        self.assigned = False
        self.renewed(hello_sent_at)

    def assignment_received(self) -> None:
        """An ASSIGN of this session completed a set."""
        self.assigned = True

    def renewed(self, sent_at: float) -> None:
        """The gateway answered a request sent at ``sent_at``."""
        if self.terms is not None:
            self.expires_at = max(self.expires_at, sent_at + self.terms.seconds)

    def acked(self, seq: int) -> None:
        """Every batch up to ``seq`` is acknowledged."""
        self._acked_seq = max(self._acked_seq, seq)
        while self._ticks and self._ticks[0][1] <= self._acked_seq:
            self._acked_tick = self._ticks.popleft()[0]

    def spooled(self, tick: int, last_seq: int) -> None:
        """Tick ``tick`` was stepped; its batches (and all before) end at ``last_seq``."""
        if last_seq <= self._acked_seq:
            self._acked_tick = tick  # nothing of it to wait for
            self._ticks.clear()
            return
        self._ticks.append((tick, last_seq))

    def standing(self, tick: int, now: float) -> Standing:
        """May tick ``tick`` step the placed agents at ``now``?"""
        standing = self._standing(tick, now)
        if standing is Standing.EXPIRED and self._was not in (Standing.EXPIRED, None):
            self.expiries += 1
        self._was = standing
        return standing

    def _standing(self, tick: int, now: float) -> Standing:
        if self.terms is None:
            return Standing.HELD if self.assigned else Standing.UNASSIGNED
        if now >= self.expires_at:
            return Standing.EXPIRED
        if not self.assigned:
            return Standing.UNASSIGNED
        oldest_unacked = self._ticks[0][0] if self._ticks else tick
        if tick - oldest_unacked >= self.terms.ticks:
            return Standing.AHEAD
        return Standing.HELD

    def remaining(self, now: float) -> float:
        """Seconds the time lease still runs (0 when expired or none)."""
        return max(0.0, self.expires_at - now) if self.terms is not None else 0.0
