"""Rollouts, sans-I/O: who runs which version, when to advance, when to roll back.

A :class:`Rollout` moves the agents of one module from ``from_version`` to
``to_version`` through :class:`Stage` s (share of agents, hold time). It
takes reports in (:meth:`Rollout.observe`: agent-ticks and faults of the new
version's agents in one tick) and says what happened
(:class:`RolloutEvent`). No sockets, no clock: a tick is whatever the caller
counts (the gateway counts edge reports).

Rules, in the order :meth:`Rollout.observe` applies them:

1. **Who.** Agent ``a`` on an edge with labels ``L`` runs ``to_version`` when
   the rollout is not rolled back, the plan's ``labels`` are empty or meet
   ``L``, and :func:`.share.share_point` of ``a`` is below the current
   stage's share; otherwise ``from_version``. Shares only grow, so an agent
   never goes back and forth while the rollout advances.
2. **Judge.** Reports of the last ``window_ticks`` ticks are kept. When they
   hold at least ``min_agent_ticks`` agent-ticks, or the window is full, and
   faults / agent-ticks exceed ``fault_threshold``, the rollout is
   **rolled back**: every agent returns to ``from_version``. Faults are traps,
   fuel or deadline overruns, and quarantined agent-ticks. Hence the bound: a
   version that faults above the threshold from its first tick is rolled
   back at most ``window_ticks`` ticks after its first report.
3. **Advance.** A stage that has held ``hold_ticks`` ticks without a rollback
   gives way to the next one; after the last stage the rollout is
   **complete**.

Every event is meant for the history (who: the operator who started the
rollout, or ``rollout`` for automatic decisions).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from .errors import RolloutError
from .share import share_point


@dataclass(frozen=True)
class Stage:
    """One step of a rollout."""

    share: float
    """Fraction of agents (0 < share <= 1) that run the new version in this stage."""
    hold_ticks: int = 0
    """Ticks this stage holds before the next one starts (the last stage: before complete)."""


@dataclass(frozen=True, kw_only=True)
class RolloutPlan:
    """What an operator asked for."""

    name: str
    """Module name."""
    from_version: str
    """Version the agents run now (and return to on rollback)."""
    to_version: str
    """Version rolled out."""
    stages: tuple[Stage, ...] = (Stage(1.0),)
    """Shares, growing; the last one is usually 1.0."""
    labels: frozenset[str] = frozenset()
    """Only edges with one of these labels take part; empty: every edge."""
    fault_threshold: float = 0.01
    """Faults per agent-tick of the new version above which it is rolled back."""
    window_ticks: int = 10
    """Ticks of reports the fault rate is judged over: the bound on detecting a bad version."""
    min_agent_ticks: int = 100
    """Agent-ticks a judgement needs before the window is full."""

    def __post_init__(self) -> None:
        if not self.stages:
            raise RolloutError("a rollout needs at least one stage")
        last = 0.0
        for stage in self.stages:
            if not 0.0 < stage.share <= 1.0 or stage.share < last:
                raise RolloutError("stage shares must grow, each in (0, 1]")
            if stage.hold_ticks < 0:
                raise RolloutError("a stage's hold must not be negative")
            last = stage.share
        if self.fault_threshold < 0:
            raise RolloutError("the fault threshold must not be negative")
        if self.window_ticks < 1 or self.min_agent_ticks < 1:
            raise RolloutError("the judging window needs at least one tick and one agent-tick")
        if self.from_version == self.to_version:
            raise RolloutError(f"{self.name} already runs {self.to_version}")


def plan_to_json(plan: RolloutPlan) -> str:
    """The plan as stored in ``modules.db`` (``deployments.plan``)."""
    doc: dict[str, Any] = asdict(plan)
    doc["labels"] = sorted(plan.labels)
    return json.dumps(doc, sort_keys=True)


def plan_from_json(text: str) -> RolloutPlan:
    """Inverse of :func:`plan_to_json`; :class:`RolloutError` for a plan that is not valid."""
    try:
        doc = json.loads(text)
        stages = tuple(Stage(float(s["share"]), int(s["hold_ticks"])) for s in doc.pop("stages"))
        labels = frozenset(str(label) for label in doc.pop("labels"))
        return RolloutPlan(stages=stages, labels=labels, **doc)
    except (ValueError, TypeError, KeyError) as exc:
        raise RolloutError(f"a stored rollout plan is not valid: {exc}") from exc


class RolloutPhase(StrEnum):
    """Where a rollout is."""

    STAGING = "staging"
    COMPLETE = "complete"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class RolloutEvent:
    """Something a report caused; each goes to the history."""

    action: str
    """``advance``, ``complete`` or ``rollback``."""
    tick: int
    """The rollout's tick count when it happened."""
    stage: int
    """Index of the stage now current (for ``advance``) or when it happened."""
    detail: str
    """One line for people: the share, the fault rate."""


@dataclass
class Rollout:
    """The state of one rollout (see the module docstring for the rules)."""

    plan: RolloutPlan
    stage: int = 0
    phase: RolloutPhase = RolloutPhase.STAGING
    ticks: int = 0
    """Ticks reported so far."""
    stage_started: int = 0
    """Tick at which the current stage started."""
    _window: deque[tuple[int, int]] = field(default_factory=deque, repr=False)

    @property
    def share(self) -> float:
        """Fraction of agents on the new version now."""
        if self.phase is RolloutPhase.ROLLED_BACK:
            return 0.0
        return self.plan.stages[self.stage].share

    def edge_takes_part(self, edge_labels: frozenset[str]) -> bool:
        return not self.plan.labels or bool(self.plan.labels & edge_labels)

    def version_for(self, agent_id: int, edge_labels: frozenset[str] = frozenset()) -> str:
        """The version agent ``agent_id`` on an edge with ``edge_labels`` runs now."""
        if self.edge_takes_part(edge_labels) and share_point(agent_id) < self.share:
            return self.plan.to_version
        return self.plan.from_version

    def fault_rate(self) -> float:
        """Faults per agent-tick over the judging window (0 with no agent-ticks)."""
        agent_ticks = sum(a for a, _ in self._window)
        return sum(f for _, f in self._window) / agent_ticks if agent_ticks else 0.0

    def observe(self, agent_ticks: int, faults: int) -> list[RolloutEvent]:
        """Report one tick in which the new version ran ``agent_ticks`` agent-ticks and
        had ``faults`` faults; the events it causes (see the rules)."""
        if agent_ticks < 0 or faults < 0:
            raise RolloutError("a report counts agent-ticks and faults, neither negative")
        if self.phase is not RolloutPhase.STAGING:
            return []
        self.ticks += 1
        self._window.append((agent_ticks, faults))
        if len(self._window) > self.plan.window_ticks:
            self._window.popleft()
        return self._judge() or self._advance()

    def _judge(self) -> list[RolloutEvent]:
        agent_ticks = sum(a for a, _ in self._window)
        full = len(self._window) >= self.plan.window_ticks
        if agent_ticks and (full or agent_ticks >= self.plan.min_agent_ticks):
            rate = self.fault_rate()
            if rate > self.plan.fault_threshold:
                stage = self.stage
                self.phase = RolloutPhase.ROLLED_BACK
                return [
                    RolloutEvent(
                        "rollback",
                        self.ticks,
                        stage,
                        f"fault rate {rate:.4g} per agent-tick > {self.plan.fault_threshold:g}",
                    )
                ]
        return []

    def _advance(self) -> list[RolloutEvent]:
        held = self.ticks - self.stage_started
        if held >= self.plan.stages[self.stage].hold_ticks:
            if self.stage + 1 < len(self.plan.stages):
                self.stage += 1
                self.stage_started = self.ticks
                share = self.plan.stages[self.stage].share
                return [RolloutEvent("advance", self.ticks, self.stage, f"share {share:.0%}")]
            self.phase = RolloutPhase.COMPLETE
            return [RolloutEvent("complete", self.ticks, self.stage, "every stage held")]
        return []

    def rollback(self) -> RolloutEvent:
        """The operator's rollback: every agent back on ``from_version``."""
        if self.phase is RolloutPhase.ROLLED_BACK:
            raise RolloutError(f"{self.plan.name} is already rolled back")
        self.phase = RolloutPhase.ROLLED_BACK
        return RolloutEvent("rollback", self.ticks, self.stage, "by the operator")
