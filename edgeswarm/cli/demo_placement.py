"""``edgeswarm demo --placement``: the swarm's agents placed by the gateway, one edge drained.

The demo adds ``edges x agents`` swarm agents (half ``boids``, a quarter
``anomaly``, a quarter ``escalate``: the edges' policies) before the edges
start with ``--placement``; half-way through it drains ``edge-1``, whose agents
move to the others with their state (the live table shows the counts change),
and the summary says what ``shards`` said at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.admin import placement_request
from edgeswarm.errors import EdgeswarmError
from edgeswarm.identity import KeyPair

__all__ = ["DRAINED", "PlacementDemo"]

DRAINED = "edge-1"
"""The edge the demo drains half-way."""
MAX_ADD = 100_000
"""Most agents one ``agents.add`` takes."""


class PlacementDemo:
    """The demo's placement steps, through the admin protocol."""

    def __init__(self, address: GatewayAddress, admin: KeyPair, admin_id: str) -> None:
        self._address, self._admin, self._admin_id = address, admin, admin_id
        self.drained_at: float | None = None
        """Seconds into the demo when ``DRAINED`` was drained (None: not yet)."""
        self.moves = 0
        self.shards: dict[str, Any] = {}
        self.error: str | None = None

    async def _ask(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        reply = await placement_request(
            self._address, op, args, key=self._admin, admin_id=self._admin_id, timeout=10.0
        )
        if not reply.ok:
            raise EdgeswarmError(f"placement {op}: {reply.message}")
        return reply.result

    async def add_agents(self, total: int) -> None:
        """``total`` swarm agents: half boids, a quarter anomaly, a quarter escalate."""
        half, quarter = total // 2, total // 4
        spans = (
            ("boids", 0, half),
            ("anomaly", half, quarter),
            ("escalate", half + quarter, total - half - quarter),
        )
        for policy, first, count in spans:
            for start in range(first, first + count, MAX_ADD):
                size = min(MAX_ADD, first + count - start)
                await self._ask("agents.add", {"first_id": start, "count": size, "policy": policy})

    async def drain_at(self, started: float, after_s: float) -> None:
        """Drain ``DRAINED`` ``after_s`` seconds after ``started``, once it holds agents
        (a background task; a refusal is kept in :attr:`error` for the summary)."""
        await asyncio.sleep(max(0.0, started + after_s - time.monotonic()))
        while not any(e["edge_id"] == DRAINED and e["agents"] for e in self.shards.get("held", [])):
            await asyncio.sleep(0.2)  # still starting (polled by the demo's loop)
        try:
            result = await self._ask("edges.drain", {"edge_id": DRAINED})
        except (EdgeswarmError, OSError) as exc:
            self.error = str(exc)
            return
        self.drained_at, self.moves = time.monotonic() - started, int(result["moves"])

    async def poll(self) -> None:
        with contextlib.suppress(EdgeswarmError, OSError):
            self.shards = await self._ask("shards", {})

    def line(self) -> str:
        """One line for the live view."""
        held = {e["edge_id"]: e["agents"] for e in self.shards.get("held", [])}
        holders = ", ".join(f"{e} {n:,}" for e, n in sorted(held.items()))
        drained = (
            f"{DRAINED} drained at {self.drained_at:.1f} s ({self.moves:,} agents to move)"
            if self.drained_at is not None
            else f"{DRAINED} will be drained half-way"
        )
        moving = self.shards.get("moving", 0)
        epoch = self.shards.get("epoch", "?")
        return f"placement epoch {epoch}: held {holders or '-'}; {moving:,} moving; {drained}"

    def summary(self) -> dict[str, Any]:
        return {
            "drained": DRAINED,
            "drained_at_s": self.drained_at,
            "moves": self.moves,
            "held": self.shards.get("held", []),
            "moving": self.shards.get("moving"),
            "epoch": self.shards.get("epoch"),
            "error": self.error,
        }
