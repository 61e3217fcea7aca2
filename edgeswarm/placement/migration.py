"""The gateway's side of a move plan, sans-I/O: commands out, events in.

A :class:`MigrationCoordinator` carries one :class:`MovePlan` out, at most
``max_in_flight`` batches at a time, each through the hand-over table of
:mod:`edgeswarm.placement.handover`. It never touches a socket or a file: it
hands out *commands* (send RELEASE to an edge, load checkpoints, send ADOPT,
store rows as checkpoints) and takes *events* (rows arrived from an edge,
checkpoints loaded, an edge adopted, an edge is down). The gateway's adapter
turns commands into frames and store calls and feeds back what happens.

Rows travel as a :class:`RowBlock`: columns of the agents' table rows
(``ids``, ``ticks`` = the last tick each was stepped at, ``state``,
``policy``), like an observation batch. A block from an edge must hold
exactly the batch's agents (a peer hands over only what it owns), else the
event is refused (:class:`HandoverRefusedError`) and nothing changes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edgeswarm.placement.errors import HandoverRefusedError
from edgeswarm.placement.handover import (
    GATEWAY,
    Handover,
    HandoverEvent,
    HandoverState,
    resume_ticks,
)
from edgeswarm.placement.moves import MoveKind, MovePlan

__all__ = [
    "AdoptRows",
    "Command",
    "LoadCheckpoints",
    "MigrationCoordinator",
    "ReleaseAgents",
    "RowBlock",
    "StoreCheckpoints",
]

DEFAULT_MAX_IN_FLIGHT = 4
"""Batches a coordinator moves at a time (each at most the plan's batch size)."""

E = HandoverEvent


@dataclass(frozen=True)
class RowBlock:
    """Table rows of some agents, as columns (row ``i`` of each is one agent)."""

    ids: NDArray[np.uint32]
    """The agents, ascending."""
    ticks: NDArray[np.uint64]
    """Last tick each agent was stepped at (0: never)."""
    state: NDArray[np.float32]
    """Policy state, shape (n, state_dim)."""
    policy: NDArray[np.uint16]
    """Policy index of each agent."""

    def sorted(self) -> RowBlock:
        order = np.argsort(self.ids, kind="stable")
        return RowBlock(self.ids[order], self.ticks[order], self.state[order], self.policy[order])


@dataclass(frozen=True)
class ReleaseAgents:
    """Tell ``edge`` to stop stepping ``ids`` at its next tick boundary and send their rows."""

    edge: str
    epoch: int
    batch: int
    ids: NDArray[np.uint32]


@dataclass(frozen=True)
class LoadCheckpoints:
    """Load the last checkpoint of ``ids`` (zero rows for agents without one), then call
    :meth:`MigrationCoordinator.checkpoints_loaded` with the rows and logged ticks."""

    epoch: int
    batch: int
    ids: NDArray[np.uint32]


@dataclass(frozen=True)
class AdoptRows:
    """Send ``rows`` to ``edge``, which steps them from ``ticks + 1`` on."""

    edge: str
    epoch: int
    batch: int
    rows: RowBlock


@dataclass(frozen=True)
class StoreCheckpoints:
    """Keep ``rows`` as the agents' checkpoints (they have no owner now)."""

    rows: RowBlock


Command = ReleaseAgents | LoadCheckpoints | AdoptRows | StoreCheckpoints


class MigrationCoordinator:
    """One move plan carried out, a bounded number of batches at a time."""

    def __init__(self, plan: MovePlan, *, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.plan = plan
        self.epoch = plan.to_epoch
        self.handovers = [Handover(b, plan.to_epoch, n) for n, b in enumerate(plan.batches)]
        self._waiting = deque(range(len(self.handovers)))
        self._active: set[int] = set()
        self._rows: dict[int, RowBlock] = {}
        self._max = max_in_flight
        self._down: set[str] = set()

    @property
    def finished(self) -> bool:
        return all(h.finished for h in self.handovers)

    @property
    def in_flight(self) -> int:
        return len(self._active)

    def agents_done(self) -> int:
        return sum(int(h.batch.ids.size) for h in self.handovers if h.finished)

    def start(self) -> list[Command]:
        """Commands that start batches until ``max_in_flight`` are under way."""
        commands: list[Command] = []
        while self._waiting and len(self._active) < self._max:
            number = self._waiting.popleft()
            self._active.add(number)
            commands += self._begin(number)
        return commands

    # --- events --------------------------------------------------------------

    def rows_received(self, sender: str, epoch: int, batch: int, rows: RowBlock) -> list[Command]:
        """The source edge handed over the rows of ``batch``."""
        h = self._handover(epoch, batch)
        rows = rows.sorted()
        if not np.array_equal(rows.ids, h.batch.ids):
            raise HandoverRefusedError(
                f"rows of hand-over {epoch}/{batch} from {sender} are not its agents"
            )
        h.on(E.ROWS_RECEIVED, sender=sender, epoch=epoch, number=batch)
        self._rows[batch] = rows
        return self._deliver(batch)

    def checkpoints_loaded(
        self, batch: int, rows: RowBlock, logged_ticks: NDArray[np.uint64]
    ) -> list[Command]:
        """Checkpoint rows of ``batch`` loaded; ``logged_ticks``: the last tick logged per agent."""
        h = self.handovers[batch]
        rows = rows.sorted()
        if not np.array_equal(rows.ids, h.batch.ids):
            raise HandoverRefusedError(f"checkpoint rows of batch {batch} are not its agents")
        event = E.SOURCE_DOWN if h.state is HandoverState.RELEASING else E.CHECKPOINT_LOADED
        h.on(event, sender=GATEWAY, epoch=self.epoch, number=batch)
        resumed = resume_ticks(rows.ticks, logged_ticks) - np.uint64(1)
        self._rows[batch] = RowBlock(rows.ids, resumed, rows.state, rows.policy)
        return self._deliver(batch)

    def adopted(self, sender: str, epoch: int, batch: int) -> list[Command]:
        """The target edge holds the rows of ``batch`` now."""
        self._handover(epoch, batch).on(E.ADOPTED, sender=sender, epoch=epoch, number=batch)
        return self._finish(batch)

    def edge_down(self, edge: str) -> list[Command]:
        """``edge`` is DOWN: batches it was giving restart from checkpoints; batches it
        was taking keep their rows as checkpoints (the next plan places them); batches not
        started yet skip it the same way."""
        self._down.add(edge)
        commands: list[Command] = []
        for number in sorted(self._active):
            h = self.handovers[number]
            if h.state is HandoverState.RELEASING and h.batch.source == edge:
                commands.append(LoadCheckpoints(self.epoch, number, h.batch.ids))
            elif h.state is HandoverState.ADOPTING and h.batch.target == edge:
                h.on(E.TARGET_DOWN, sender=GATEWAY, epoch=self.epoch, number=number)
                h.on(E.PARKED, sender=GATEWAY, epoch=self.epoch, number=number)
                commands.append(StoreCheckpoints(self._rows.pop(number)))
                commands += self._finish(number)
        return commands

    # --- internals -------------------------------------------------------------

    def _handover(self, epoch: int, batch: int) -> Handover:
        if epoch != self.epoch or not 0 <= batch < len(self.handovers):
            raise HandoverRefusedError(
                f"hand-over {epoch}/{batch} is not part of the plan of epoch {self.epoch}: stale"
            )
        return self.handovers[batch]

    def _begin(self, number: int) -> list[Command]:
        h = self.handovers[number]
        source_alive = h.batch.source is not None and h.batch.source not in self._down
        if h.batch.kind in (MoveKind.HANDOVER, MoveKind.PARK) and source_alive:
            h.on(E.RELEASE_SENT, sender=GATEWAY, epoch=self.epoch, number=number)
            assert h.batch.source is not None
            return [ReleaseAgents(h.batch.source, self.epoch, number, h.batch.ids)]
        return [LoadCheckpoints(self.epoch, number, h.batch.ids)]

    def _deliver(self, number: int) -> list[Command]:
        h = self.handovers[number]
        rows = self._rows[number]
        if h.batch.target is None or h.batch.target in self._down:
            h.on(E.PARKED, sender=GATEWAY, epoch=self.epoch, number=number)
            del self._rows[number]
            return [StoreCheckpoints(rows), *self._finish(number)]
        h.on(E.ADOPT_SENT, sender=GATEWAY, epoch=self.epoch, number=number)
        return [AdoptRows(h.batch.target, self.epoch, number, rows)]

    def _finish(self, number: int) -> list[Command]:
        self._active.discard(number)
        self._rows.pop(number, None)
        return self.start()
