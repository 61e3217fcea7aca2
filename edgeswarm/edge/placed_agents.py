"""The edge's side of placement: the agents the gateway assigns, and their checkpoints.

With ``--placement`` an edge runs no fixed id range: the gateway sends ASSIGN
frames (``docs/protocol.md`` section 13.4) naming the agents the edge runs at a
placement epoch, in parts. Once every part of an epoch has arrived the set is
*pending*; between two ticks :meth:`PlacedAgents.apply` makes the agent table
hold exactly that set, vectorised (no Python loop per agent):

- rows of agents no longer assigned are dropped;
- agents new to the edge get a row with the ``state`` and ``ticks`` the ASSIGN
  carried (their last checkpoint) and the policy slot whose name the gateway gave
  (an unknown name runs slot 0, counted and logged);
- rows stay grouped by policy (stable sort), so every policy's agents are one slice;
- the world (``--io sim``) follows: kept agents keep their positions, new ones
  enter at positions drawn from their ids.

Every agent row has its own tick (``ticks``): the last tick it was stepped at,
carried over from its checkpoint. Every ``checkpoint_interval`` ticks the edge
sends CHECKPOINT frames with the rows (ids, ticks, state), at most
``max_rows`` each. Checkpoints are their own frame rather than spooled batches:
they are latest-wins state, not a record of what happened; spooling them would
replay stale state after a restart and take credit from observations, and a
lost one is replaced by the next (the staleness bound, docs/operations.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from edgeswarm.wire import Assign, Checkpoint

from .agent_table import AgentTable
from .world import FlockingWorld

if TYPE_CHECKING:
    from edgeswarm.client.session import GatewayClient

    from .config import EdgeConfig
    from .policy.set import PolicySet

__all__ = ["AssignmentParts", "PlacedAgents", "RowChange", "placed_agents_for"]

logger = logging.getLogger("edgeswarm.edge.placement")


@dataclass(frozen=True)
class RowChange:
    """What one :meth:`PlacedAgents.apply` did."""

    epoch: int
    added: int
    dropped: int
    kept: int


class AssignmentParts:
    """Parts of ASSIGN frames collected until one epoch's set is complete."""

    def __init__(self) -> None:
        self._epoch: int | None = None
        self._parts: dict[int, Assign] = {}
        self.complete: Assign | None = None
        """The newest complete set (its parts joined), until taken."""
        self.newest_epoch = -1
        """The newest epoch completed so far: parts of an older one are ignored."""

    def receive(self, part: Assign) -> bool:
        """Add one part; True when it completed its epoch's set."""
        if part.epoch < self.newest_epoch:
            return False  # a late part of an epoch already superseded
        if part.epoch != self._epoch:
            self._epoch, self._parts = part.epoch, {}
        self._parts[part.part] = part
        if len(self._parts) < part.parts or any(
            p.parts != part.parts for p in self._parts.values()
        ):
            return False
        parts = [self._parts[n] for n in range(part.parts)]
        self.complete = _joined(parts)
        self.newest_epoch = part.epoch
        self._epoch, self._parts = None, {}
        return True

    def take(self) -> Assign | None:
        complete, self.complete = self.complete, None
        return complete


def _joined(parts: Sequence[Assign]) -> Assign:
    first = parts[0]
    names = first.policy_names
    policy = []
    for p in parts:  # each part indexes its own names: map them onto the first part's
        if p.policy_names == names:
            policy.append(p.policy)
            continue
        extra = [n for n in p.policy_names if n not in names]
        names = (*names, *extra)
        lookup = np.array([names.index(n) for n in p.policy_names], dtype=np.uint16)
        policy.append(lookup[p.policy] if p.count else p.policy)
    ids = np.concatenate([p.agent_ids for p in parts])
    order = np.argsort(ids, kind="stable")
    return Assign(
        epoch=first.epoch,
        part=0,
        parts=1,
        agent_ids=ids[order],
        policy=np.concatenate(policy)[order],
        ticks=np.concatenate([p.ticks for p in parts])[order],
        state=np.concatenate([p.state for p in parts])[order],
        policy_names=names,
    )


class PlacedAgents:
    """The assigned agents of one edge: pending sets, per-agent ticks, checkpoints."""

    def __init__(
        self,
        table: AgentTable,
        world: FlockingWorld | None,
        *,
        slot_of: Callable[[str], int | None],
        checkpoint_interval: int,
        seed: int = 0,
    ) -> None:
        self.table = table
        self.world = world
        self._slot_of = slot_of
        self.checkpoint_interval = checkpoint_interval
        self._seed = seed
        self.parts = AssignmentParts()
        self.epoch: int | None = None
        """Epoch of the set the table holds (None: nothing assigned yet)."""
        self.ticks = np.zeros(len(table), dtype=np.uint64)
        """Per row: the last tick the agent was stepped at."""
        self.unknown_policies = 0
        """Policy names of ASSIGN frames this edge does not run (their agents run slot 0)."""
        self._since_checkpoint = 0
        self.released: list[Checkpoint] = []
        """Rows of agents dropped by :meth:`apply`, to send (at the epoch that dropped
        them) before anything else: the gateway gives them to their new owner only then."""

    def receive(self, part: Assign) -> bool:
        """An ASSIGN part arrived (the client's handler; applied at the next tick boundary);
        True when it completed its epoch's set."""
        return self.parts.receive(part)

    def apply(self) -> RowChange | None:
        """Between ticks: make the table hold the pending set, if one is complete."""
        assign = self.parts.take()
        if assign is None:
            return None
        table = self.table
        before = len(table)
        held = np.isin(table.ids, assign.agent_ids, assume_unique=True)
        keep = np.flatnonzero(held)
        gone = ~held  # the rows of agents given away go back first: the hand-over; sent
        self.released.append(  # also when empty: it says this epoch is applied, so the
            Checkpoint(  # gateway stops waiting for agents of a set never applied here
                epoch=assign.epoch,
                tick=0,
                agent_ids=table.ids[gone],
                ticks=self.ticks[gone],
                state=table.state[gone],
            )
        )
        new = ~np.isin(assign.agent_ids, table.ids, assume_unique=True)
        slots = self._slots(assign.policy_names)[assign.policy[new]]
        state = np.zeros((int(new.sum()), table.state_dim), dtype=np.float32)
        width = min(table.state_dim, assign.state.shape[1])  # a narrower state is zero-padded
        state[:, :width] = assign.state[new, :width]
        added_ids = assign.agent_ids[new]
        policy = np.concatenate([table.policy[keep], slots])
        order = np.argsort(policy, kind="stable")  # policy groups stay contiguous
        table.replace_rows(keep, added_ids, state, slots, order)
        self.ticks = np.concatenate([self.ticks[keep], assign.ticks[new]])[order]
        if self.world is not None:
            self.world.replace_rows(keep, added_ids, order, seed=self._seed)
        change = RowChange(
            epoch=assign.epoch,
            added=int(added_ids.size),
            dropped=before - int(keep.size),
            kept=int(keep.size),
        )
        self.epoch = assign.epoch
        return change

    def _slots(self, names: tuple[str, ...]) -> NDArray[np.uint16]:
        slots = np.zeros(max(1, len(names)), dtype=np.uint16)
        for index, name in enumerate(names):
            slot = self._slot_of(name)
            if slot is None:
                self.unknown_policies += 1
                logger.warning(
                    "assigned agents run a policy this edge does not have; they run slot 0",
                    extra={"policy": name},
                )
                continue
            slots[index] = slot
        return slots

    def stepping_ticks(self) -> NDArray[np.uint64]:
        """Per row: the tick the agent is stepped at in the tick under way."""
        return self.ticks + np.uint64(1)

    def stepped(self, tick: int) -> None:
        """The table's agents were stepped at edge tick ``tick``."""
        self.ticks += np.uint64(1)

    def after_tick(self, tick: int, client: GatewayClient | None) -> None:
        """The edge stepped tick ``tick``: the agents' ticks advance; checkpoints when due,
        at most WELCOME's ``max_batch_agents`` rows each (none while disconnected: the
        next checkpoint replaces a missed one)."""
        self.stepped(tick)
        released, self.released = self.released, []
        welcome = client.welcome if client is not None else None
        if client is None or welcome is None:
            return  # released rows are lost with the session: the gateway uses checkpoints
        limit = welcome.max_batch_agents
        frames = [part for frame in released for part in _split(frame, tick, limit)]
        for frame in [*frames, *self.due_checkpoints(tick, limit)]:
            if not client.send_checkpoint(frame):
                break

    def due_checkpoints(self, tick: int, max_rows: int) -> list[Checkpoint]:
        """CHECKPOINT frames to send after this tick (every ``checkpoint_interval`` ticks)."""
        if self.checkpoint_interval <= 0 or self.epoch is None:
            return []
        self._since_checkpoint += 1
        if self._since_checkpoint < self.checkpoint_interval:
            return []
        self._since_checkpoint = 0
        return self.checkpoints(tick, max_rows)

    def checkpoints(self, tick: int, max_rows: int) -> list[Checkpoint]:
        """The rows of every agent now, ``max_rows`` per frame."""
        table, epoch = self.table, self.epoch if self.epoch is not None else 0
        return [
            Checkpoint(
                epoch=epoch,
                tick=tick,
                agent_ids=table.ids[start : start + max_rows].copy(),
                ticks=self.ticks[start : start + max_rows].copy(),
                state=table.state[start : start + max_rows].copy(),
            )
            for start in range(0, len(table), max_rows)
        ]


def placed_agents_for(
    config: EdgeConfig, table: AgentTable, world: FlockingWorld | None, policies: PolicySet
) -> PlacedAgents:
    """An edge's placed agents: policy names map to the slots of ``--policy``."""
    names = {policies.name_of(slot): slot for slot in range(len(policies))}
    names.update({name: slot for slot, name in enumerate(config.policies)})
    return PlacedAgents(
        table,
        world,
        slot_of=names.get,
        checkpoint_interval=config.checkpoint_interval,
        seed=config.seed,
    )


def _split(frame: Checkpoint, tick: int, max_rows: int) -> list[Checkpoint]:
    """``frame`` at edge tick ``tick``, ``max_rows`` rows per frame (one frame if empty)."""
    return [
        Checkpoint(
            epoch=frame.epoch,
            tick=tick,
            agent_ids=frame.agent_ids[start : start + max_rows],
            ticks=frame.ticks[start : start + max_rows],
            state=frame.state[start : start + max_rows],
        )
        for start in range(0, max(1, frame.count), max_rows)
    ]
