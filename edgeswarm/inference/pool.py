"""The nodes a gateway forwards batches to: choice by least outstanding, circuit breaking.

Sans-I/O: a :class:`NodePool` is told what happens (a node joined or left, an
attempt was sent, answered or failed) and the time; it answers which node a
batch goes to. Rules:

1. A node serves the models it announced (native nodes: HELLO ``models``;
   OIP endpoints: the models configured for them).
2. :meth:`NodePool.pick` chooses, among the nodes that serve the model, have
   room (fewer than ``max_outstanding`` attempts in flight) and whose circuit
   lets traffic through, the one with the fewest attempts in flight; ties go
   to the node used least recently. Nodes a batch already failed on are
   skipped for its retry (``exclude``).
3. Circuit breaker per node: ``failure_threshold`` failures in a row open it
   (no traffic) for ``cooldown_s``; then it is half-open: one attempt at a
   time goes through; its success closes the circuit, its failure opens it
   again for another ``cooldown_s``. A success always resets the count.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "DEFAULT_COOLDOWN_S",
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_MAX_OUTSTANDING",
    "CircuitState",
    "NodePool",
    "PooledNode",
]

DEFAULT_MAX_OUTSTANDING = 16
"""Attempts one node may have in flight unless configured otherwise.

It bounds a node's throughput to ``window / round trip``. At 4, with three
Python processes sharing two cores (round trips of 5-7 ms under that load),
one node took ~600 batches/s from the gateway against ~700 asked at half the
``batched`` rate: the queue never drained (issue 17: 125 ms in the queue at
p50). 16 covers round trips up to ~20 ms at that rate and stays well under a
node's own ``max_pending`` (64), so the node, not the window, sets the pace."""
DEFAULT_FAILURE_THRESHOLD = 3
"""Failures in a row that open a node's circuit."""
DEFAULT_COOLDOWN_S = 2.0
"""How long an open circuit keeps traffic away before one trial attempt."""


class CircuitState(Enum):
    CLOSED = "closed"
    """Traffic flows."""
    OPEN = "open"
    """No traffic until the cooldown ends."""
    HALF_OPEN = "half_open"
    """One trial attempt at a time."""


@dataclass
class PooledNode:
    """What the pool knows of one node."""

    key: Hashable
    """The node's identity for the caller (a session, an OIP endpoint)."""
    name: str
    """For logs and metrics: a peer id or a URL."""
    models: frozenset[str]
    outstanding: int = 0
    """Attempts sent and not answered nor failed."""
    failures: int = 0
    """Failures in a row."""
    open_until: float | None = None
    """While the circuit is open: when it goes half-open; None when closed."""
    last_used: float = field(default=float("-inf"))

    def circuit(self, now: float) -> CircuitState:
        if self.open_until is None:
            return CircuitState.CLOSED
        return CircuitState.OPEN if now < self.open_until else CircuitState.HALF_OPEN


class NodePool:
    """Nodes by key (rules in the module docstring)."""

    def __init__(
        self,
        *,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
    ) -> None:
        self.max_outstanding = max_outstanding
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._nodes: dict[Hashable, PooledNode] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def nodes(self) -> Iterable[PooledNode]:
        return self._nodes.values()

    def add(self, key: Hashable, name: str, models: Iterable[str]) -> PooledNode:
        node = PooledNode(key=key, name=name, models=frozenset(models))
        self._nodes[key] = node
        return node

    def remove(self, key: Hashable) -> PooledNode | None:
        return self._nodes.pop(key, None)

    def get(self, key: Hashable) -> PooledNode | None:
        return self._nodes.get(key)

    def serves(self, model: str) -> bool:
        """Whether any node (whatever its circuit) serves ``model``."""
        return any(model in node.models for node in self._nodes.values())

    def pick(
        self, model: str, now: float, *, exclude: frozenset[Hashable] = frozenset()
    ) -> PooledNode | None:
        """The node the next attempt of a ``model`` batch goes to, or None (none has room)."""
        best: PooledNode | None = None
        for node in self._nodes.values():
            if model not in node.models or node.key in exclude:
                continue
            state = node.circuit(now)
            limit = 1 if state is CircuitState.HALF_OPEN else self.max_outstanding
            if state is CircuitState.OPEN or node.outstanding >= limit:
                continue
            if best is None or (node.outstanding, node.last_used) < (
                best.outstanding,
                best.last_used,
            ):
                best = node
        return best

    def sent(self, node: PooledNode, now: float) -> None:
        node.outstanding += 1
        node.last_used = now

    def succeeded(self, node: PooledNode) -> None:
        node.outstanding = max(0, node.outstanding - 1)
        node.failures = 0
        node.open_until = None

    def failed(self, node: PooledNode, now: float, *, settled: bool = True) -> bool:
        """Count a failure of ``node``; True when it opened (or re-opened) its circuit.

        ``settled=False``: the attempt is still out (it timed out and may answer
        late), so the outstanding count stays until it is answered or abandoned.
        """
        if settled:
            node.outstanding = max(0, node.outstanding - 1)
        node.failures += 1
        state = node.circuit(now)
        if state is CircuitState.HALF_OPEN or (
            state is CircuitState.CLOSED and node.failures >= self.failure_threshold
        ):
            node.open_until = now + self.cooldown_s
            return True
        return False

    def settle(self, node: PooledNode) -> None:
        """An attempt already counted as failed is over (answered late or abandoned)."""
        node.outstanding = max(0, node.outstanding - 1)

    def wake_at(self) -> float | None:
        """When an open circuit goes half-open (batches may wait for it)."""
        times = [n.open_until for n in self._nodes.values() if n.open_until is not None]
        return min(times) if times else None
