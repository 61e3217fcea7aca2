"""The hand-over of one move batch, as the gateway drives it: one table, no I/O.

Rules (the invariants the table keeps; tests/test_placement_handover.py checks
them by stepping simulated edges tick by tick):

1. An edge steps exactly the agents whose rows it holds. Every row carries the
   agent's own ``tick``: the last tick it was stepped at. Stepping sets it to
   ``tick + 1``; observations carry ``(agent, tick)``.
2. The source stops holding the rows *before* the gateway has them
   (RELEASING -> HELD happens on the rows' arrival, which the source sends at
   a tick boundary after dropping them), and the target starts holding them
   only *after* the gateway has sent them (ADOPTING). So no instant exists at
   which two edges hold one agent: never stepped on two edges.
3. The target steps an adopted row first at ``tick + 1`` of the row it got:
   no tick stepped twice, none skipped, on a live hand-over.
4. Across a failure (source DOWN while RELEASING, target DOWN while
   ADOPTING, RESTORE moves) the rows come from the agent's last checkpoint and
   the resume tick is ``max(checkpoint tick, last tick logged for the agent) +
   1`` (:func:`resume_ticks`): no tick is stepped twice; the ticks between the
   checkpoint and the failure keep their logged observations, but their state
   changes are lost (the staleness bound, docs/operations.md).
5. Every message of a hand-over carries its ``(epoch, batch)``; one of another
   epoch or batch, or from a node that is not the expected sender, is refused
   (:class:`HandoverRefusedError`, PLACEMENT_STALE on the wire) and changes nothing.

The table (state, event) -> next state; events not listed are refused::

    state       event                 next       who may send it
    PLANNED     RELEASE_SENT          RELEASING  gateway (HANDOVER, PARK with a live source)
    PLANNED     CHECKPOINT_LOADED     HELD       gateway (RESTORE, PLACE: rows from the store)
    RELEASING   ROWS_RECEIVED         HELD       the source edge
    RELEASING   SOURCE_DOWN           HELD       gateway (rows from the last checkpoint)
    HELD        ADOPT_SENT            ADOPTING   gateway (a target is alive)
    HELD        PARKED                PARKED     gateway (PARK: rows kept as checkpoint)
    ADOPTING    ADOPTED               DONE       the target edge
    ADOPTING    TARGET_DOWN           HELD       gateway (re-planned; resume rule 4)

Who holds (and steps) the agents in each state::

    PLANNED, RELEASING   source      HELD, PARKED   nobody (the gateway has the rows)
    ADOPTING             the target, from the moment it adds the rows
    DONE                 target
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from edgeswarm.placement.errors import HandoverRefusedError
from edgeswarm.placement.moves import MoveBatch

__all__ = [
    "HOLDER",
    "TRANSITIONS",
    "Handover",
    "HandoverEvent",
    "HandoverState",
    "resume_ticks",
]


class HandoverState(enum.Enum):
    PLANNED = "planned"
    RELEASING = "releasing"
    HELD = "held"
    ADOPTING = "adopting"
    DONE = "done"
    PARKED = "parked"


class HandoverEvent(enum.Enum):
    RELEASE_SENT = "release_sent"
    CHECKPOINT_LOADED = "checkpoint_loaded"
    ROWS_RECEIVED = "rows_received"
    SOURCE_DOWN = "source_down"
    ADOPT_SENT = "adopt_sent"
    PARKED = "parked"
    ADOPTED = "adopted"
    TARGET_DOWN = "target_down"


S, E = HandoverState, HandoverEvent

GATEWAY = "gateway"
SOURCE = "source"
TARGET = "target"

TRANSITIONS: dict[tuple[HandoverState, HandoverEvent], tuple[HandoverState, str]] = {
    (S.PLANNED, E.RELEASE_SENT): (S.RELEASING, GATEWAY),
    (S.PLANNED, E.CHECKPOINT_LOADED): (S.HELD, GATEWAY),
    (S.RELEASING, E.ROWS_RECEIVED): (S.HELD, SOURCE),
    (S.RELEASING, E.SOURCE_DOWN): (S.HELD, GATEWAY),
    (S.HELD, E.ADOPT_SENT): (S.ADOPTING, GATEWAY),
    (S.HELD, E.PARKED): (S.PARKED, GATEWAY),
    (S.ADOPTING, E.ADOPTED): (S.DONE, TARGET),
    (S.ADOPTING, E.TARGET_DOWN): (S.HELD, GATEWAY),
}
"""(state, event) -> (next state, who may send the event)."""

HOLDER: dict[HandoverState, str | None] = {
    S.PLANNED: SOURCE,
    S.RELEASING: SOURCE,
    S.HELD: None,
    S.ADOPTING: TARGET,
    S.DONE: TARGET,
    S.PARKED: None,
}
"""Who may hold (and step) the batch's agents in each state (ADOPTING: once added)."""

TERMINAL = frozenset({S.DONE, S.PARKED})


def resume_ticks(
    checkpoint_ticks: NDArray[np.uint64], logged_ticks: NDArray[np.uint64]
) -> NDArray[np.uint64]:
    """First tick to step after a failure, per agent (rule 4)."""
    return np.maximum(checkpoint_ticks, logged_ticks) + np.uint64(1)


@dataclass
class Handover:
    """One move batch on its way from source to target (see the table above)."""

    batch: MoveBatch
    """The agents and who gives them to whom."""
    epoch: int
    """Placement epoch of the plan this batch belongs to."""
    number: int
    """Batch number within the epoch; with ``epoch`` it names this hand-over on the wire."""
    state: HandoverState = HandoverState.PLANNED
    history: list[HandoverState] = field(default_factory=list)
    """States left so far, oldest first (shown by ``edgeswarm shards``)."""

    def sender(self, role: str) -> str | None:
        """The node that plays ``role`` (source/target) in this hand-over, or the gateway."""
        if role == SOURCE:
            return self.batch.source
        if role == TARGET:
            return self.batch.target
        return GATEWAY

    def on(self, event: HandoverEvent, *, sender: str, epoch: int, number: int) -> HandoverState:
        """Apply ``event`` sent by ``sender`` (a node name, or ``"gateway"``); the new state.

        Raises :class:`HandoverRefusedError` (and changes nothing) on a stale epoch or
        batch number, a sender that is not the one the table names, or an event
        the current state does not take.
        """
        if (epoch, number) != (self.epoch, self.number):
            raise HandoverRefusedError(
                f"{event.value} for batch {epoch}/{number} reached hand-over "
                f"{self.epoch}/{self.number}: stale, ignored"
            )
        try:
            next_state, role = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise HandoverRefusedError(
                f"{event.value} is not allowed in state {self.state.value} "
                f"(hand-over {self.epoch}/{self.number})"
            ) from None
        expected = self.sender(role)
        if sender != expected:
            raise HandoverRefusedError(
                f"{event.value} of hand-over {self.epoch}/{self.number} must come from "
                f"{expected}, not {sender}"
            )
        self.history.append(self.state)
        self.state = next_state
        return next_state

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def holder(self) -> str | None:
        """The node that may hold the agents now (None: the gateway has the rows)."""
        role = HOLDER[self.state]
        return None if role is None else self.sender(role)
