"""The edge's placement lease at work: fed by the session, heartbeats, fencing, metrics.

:class:`~edgeswarm.placement.lease.Lease` decides (pure); this wires it to the edge's
sessions: WELCOME starts a session's lease, ACKs and STATUS answers renew it, a
complete ASSIGN says the session's assignment arrived, and a heartbeat (STATUS_REQUEST
every quarter lease) keeps an edge that sends nothing (no agents, waiting on acks)
holding it. The tick loop asks :meth:`PlacementLease.may_step` before each tick and
waits on :meth:`PlacementLease.wait_change` while fenced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgeswarm.client.errors import AuthRefusedError, SessionEndedError
from edgeswarm.client.session import GatewayClient
from edgeswarm.placement.lease import Lease, LeaseTerms, Standing
from edgeswarm.wire import Assign

if TYPE_CHECKING:
    from .metrics import EdgeMetrics

__all__ = ["PlacementLease"]

logger = logging.getLogger("edgeswarm.edge.placement")

_IDLE_HEARTBEAT_S = 1.0
"""How often a session without lease terms (an older gateway) is asked nothing: the
keeper only checks again for a new session this often."""


class PlacementLease:
    """One edge's lease across its sessions."""

    def __init__(
        self, metrics: EdgeMetrics, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.lease = Lease()
        self._metrics = metrics
        self._clock = clock
        self._changed = asyncio.Event()
        self._client: GatewayClient | None = None
        self.fenced_since: float | None = None
        """When the edge last stopped stepping for want of a lease (None: stepping)."""
        self.fenced_ticks = 0
        """Tick starts skipped for want of a lease (summary's ``lease_fenced_waits``)."""
        self.fenced_agents = 0
        """Placed agents not stepped now (``edgeswarm_edge_fenced_agents``)."""

    # --- the session's events ------------------------------------------------

    def attach(self, client: GatewayClient, on_assign: Callable[[Assign], bool]) -> None:
        """A new session: its answers feed the lease; ``on_assign`` gets each ASSIGN part
        and says whether it completed a set (then the session's assignment arrived)."""
        self._client = client

        def assigned(part: Assign) -> None:
            if on_assign(part):
                self.lease.assignment_received()
                self._changed.set()

        client.assign_handler = assigned
        client.answered_handler = self._answered

    def _answered(self, sent_at: float, seq: int | None) -> None:
        client = self._client
        if seq is None and client is not None and client.welcome is not None:
            welcome = client.welcome
            terms = (
                LeaseTerms(seconds=welcome.lease_ms / 1e3, ticks=welcome.lease_ticks or 1 << 62)
                if welcome.lease_ms
                else None
            )
            self.lease.session_started(terms, sent_at)
            self.lease.acked(welcome.resume_seq)  # held already: no ACK will come for them
        elif seq is not None:
            self.lease.renewed(sent_at)
            self.lease.acked(seq)
        self._changed.set()

    def spooled(self, tick: int, last_seq: int) -> None:
        """Tick ``tick``'s batches end at ``last_seq``."""
        self.lease.spooled(tick, last_seq)

    def figures(self) -> dict[str, int]:
        """For the edge's progress and summary records."""
        return {
            "lease_expired": self.lease.expiries,
            "lease_fenced_waits": self.fenced_ticks,
            "fenced_agents": self.fenced_agents,
        }

    # --- the tick loop -------------------------------------------------------

    def may_step(self, tick: int, agents: int) -> bool:
        """Whether tick ``tick`` may step the placed agents now; fencing and unfencing are
        logged (one line each) and counted."""
        before = self.lease.expiries
        standing = self.lease.standing(tick, self._clock())
        if self.lease.expiries > before:
            self._metrics.lease_expired.inc()
        if standing is Standing.HELD:
            if self.fenced_since is not None:
                logger.info(
                    "placement lease held again; stepping the assigned agents",
                    extra={"fenced_s": round(self._clock() - self.fenced_since, 3), "tick": tick},
                )
                self.fenced_since = None
            self.fenced_agents = 0
            self._metrics.fenced_agents.set(0)
            return True
        self.fenced_ticks += 1
        self.fenced_agents = agents
        self._metrics.fenced_agents.set(agents)
        if self.fenced_since is None and standing is not Standing.AHEAD:
            self.fenced_since = self._clock()
            expired = standing is Standing.EXPIRED  # else: a session's assignment to come
            logger.log(
                logging.WARNING if expired else logging.INFO,
                "no placement lease; the edge stops stepping its placed agents",
                extra={"why": standing.value, "agents": agents, "tick": tick},
            )
        return False

    async def wait_change(self, at_most: float) -> None:
        """Until the lease may have changed (an answer, an ASSIGN), ``at_most`` seconds."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await self._changed.wait()

    # --- heartbeat -----------------------------------------------------------

    async def keep(self) -> None:
        """Ask the gateway's STATUS every quarter lease, so a quiet edge keeps its lease."""
        while True:
            client, terms = self._client, self.lease.terms
            if client is None or client.welcome is None or terms is None:
                await self.wait_change(_IDLE_HEARTBEAT_S)
                continue
            sent = self._clock()
            with contextlib.suppress(TimeoutError, SessionEndedError, AuthRefusedError):
                await client.request_status(timeout=terms.seconds)
                if client is self._client:
                    self.lease.renewed(sent)
                    self._changed.set()
            await asyncio.sleep(max(0.0, sent + terms.seconds / 4 - self._clock()))
