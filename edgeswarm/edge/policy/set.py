"""The policies of an edge, by slot, stepped over an agent table; quarantine.

``table.policy[i]`` is the slot (index in this set) of the policy agent ``i``
runs. Each tick every policy is called once with all its agents.

Quarantine rules, all here:

- A slot whose module failed to load (:class:`PolicySpec` whose load raised
  anything at all: a :class:`~edgeswarm.edge.policy.errors.PolicyError`, or any
  other exception, which becomes a ``load`` fault) is quarantined from the start.
- A :class:`~edgeswarm.edge.policy.errors.PolicyError` from ``step`` quarantines the
  slot in that tick; so does a policy whose dimensions do not fit the table
  (observation and action widths equal, state no wider than the table's).
- A quarantined slot's agents get the safe action: ``fallback="zero"`` writes
  zero actions, ``"hold"`` leaves their last actions in the table. Their state
  is left as it was. Every other slot still steps in the same tick.
- Each quarantine is one :class:`PolicyFault`: logged once on
  ``edgeswarm.edge`` (``extra``: ``policy``, ``kind``, ``error``), counted in
  :attr:`PolicySet.fault_counts` by ``(policy, kind)``, and passed to
  ``on_fault`` (the runner feeds ``edgeswarm_edge_policy_faults_total``).
- :meth:`PolicySet.swap` (hot swap) and :meth:`PolicySet.add` load a new module
  between ticks; the agents' state lives in the table, not in the instance, so
  it stays. A module whose ``state_dim`` differs from the one it replaces (or
  sits beside, for :meth:`PolicySet.add` with ``like``) is refused with
  :class:`~edgeswarm.edge.policy.errors.PolicyStateLayoutError`, as is any
  module that fails to load: nothing changes.
- :meth:`PolicySet.reenable` replaces the slot's instance with a fresh one
  (same compiled module, same config) and lifts the quarantine; if that fails
  the slot stays quarantined with the new fault.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.policy.errors import (
    PolicyAbiError,
    PolicyError,
    PolicyLoadError,
    PolicyStateLayoutError,
)
from edgeswarm.edge.policy.heavy import HeavyLaneSeam
from edgeswarm.edge.policy.module_cache import ModuleCache
from edgeswarm.edge.policy.sandbox import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MEMORY_LIMIT,
    FuelBudget,
    HostCallCap,
)
from edgeswarm.edge.policy.swarm_state import LocalSwarmState, SwarmState
from edgeswarm.edge.policy.wasm_host import ModuleSource, WasmPolicy
from edgeswarm.models import ModelRegistry
from edgeswarm.resource import Resource

logger = logging.getLogger("edgeswarm.edge")

Fallback = Literal["zero", "hold"]
"""Safe action of a quarantined slot's agents."""
DEFAULT_FALLBACK: Fallback = "zero"
"""The safe action unless configured otherwise: zero."""


class Policy(Protocol):
    """What a :class:`PolicySet` needs from a policy (:class:`WasmPolicy` is one)."""

    name: str

    def step(
        self,
        obs: NDArray[np.float32],
        state: NDArray[np.float32],
        out_actions: NDArray[np.float32],
    ) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PolicySpec:
    """How to load one slot's policy (so a failed load still has a slot to retry)."""

    module: ModuleSource
    """Wasm/WAT bytes, a ``.wasm`` path, or a compiled module."""
    name: str | None = None
    """Name for logs and metrics (default: the descriptor's, or the file's stem)."""
    config: bytes = b""
    """Blob passed to ``es_init``."""
    fuel: FuelBudget = field(default_factory=FuelBudget)
    host_calls: HostCallCap = field(default_factory=HostCallCap)
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    """Linear memory limit of the instance, bytes."""
    deadline_s: float | None = DEFAULT_DEADLINE_S
    """Wall-clock limit of each call into the module, seconds (None: none)."""

    def label(self) -> str:
        """Name to report when the module never loaded."""
        if self.name is not None:
            return self.name
        if isinstance(self.module, str | os.PathLike):
            return os.path.splitext(os.path.basename(os.fspath(self.module)))[0]
        return "<bytes>"


@dataclass(frozen=True)
class PolicyFault:
    """One quarantine event."""

    slot: int
    policy: str
    """Policy name (metrics label)."""
    kind: str
    """Stable error kind: ``load``, ``trap``, ``memory``, ``deadline``, ``fuel``,
    ``host_calls``, ``abi``, ``nonfinite_action``, ``action_bounds``."""
    error: PolicyError


class PolicySet(Resource):
    """Owns its policies (closes them on :meth:`close`); slot = position.

    ``policies`` are loaded policies (kept as they are, with their own seed,
    swarm state and models) or :class:`PolicySpec` (loaded here with ``seed``,
    the slot, ``cache``, ``swarm`` and ``models``).
    """

    def __init__(
        self,
        policies: Iterable[Policy | PolicySpec],
        *,
        fallback: Fallback = DEFAULT_FALLBACK,
        seed: int = 0,
        cache: ModuleCache | None = None,
        swarm: SwarmState | None = None,
        models: ModelRegistry | None = None,
        heavy: HeavyLaneSeam | None = None,
        on_fault: Callable[[PolicyFault], None] | None = None,
    ) -> None:
        if fallback not in ("zero", "hold"):
            raise ValueError(f"fallback must be 'zero' or 'hold', got {fallback!r}")
        self.fallback: Fallback = fallback
        self.seed = seed
        self.swarm: SwarmState = swarm if swarm is not None else LocalSwarmState()
        self.models = models
        self.heavy = heavy
        self.on_fault = on_fault
        self._cache = cache
        self._specs: list[PolicySpec | None] = []
        self._policies: list[Policy | None] = []
        self._quarantined: dict[int, PolicyError] = {}
        self.fault_counts: dict[tuple[str, str], int] = {}
        """Quarantine events by ``(policy, kind)``."""
        for slot, item in enumerate(policies):
            if isinstance(item, PolicySpec):
                self._specs.append(item)
                self._policies.append(None)
                self._load(slot)
            else:
                self._specs.append(None)
                self._policies.append(item)

    def _instance(self, spec: PolicySpec, slot: int) -> WasmPolicy:
        return WasmPolicy(
            spec.module,
            name=spec.name,
            config=spec.config,
            fuel=spec.fuel,
            host_calls=spec.host_calls,
            memory_limit=spec.memory_limit,
            deadline_s=spec.deadline_s,
            cache=self._cache,
            swarm=self.swarm,
            models=self.models,
            heavy=self.heavy,
            seed=self.seed,
            slot=slot,
        )

    def _load(self, slot: int) -> None:
        spec = self._specs[slot]
        assert spec is not None
        try:
            policy = self._instance(spec, slot)
        except Exception as exc:  # whatever a module makes loading raise, the edge lives on
            self._quarantine(slot, spec.label(), _as_load_error(exc, spec.label()))
            return
        self._policies[slot] = policy

    def _checked(self, spec: PolicySpec, slot: int, like: int | None) -> WasmPolicy:
        """A loaded instance of ``spec`` for ``slot`` whose state layout is ``like``'s."""
        try:
            policy = self._instance(spec, slot)
        except Exception as exc:
            raise _as_load_error(exc, spec.label()) from exc
        old = self._policies[like] if like is not None else None
        old_dims = getattr(old, "dims", None)
        if old is not None and old_dims is not None and old_dims[1] != policy.dims[1]:
            policy.close()
            raise PolicyStateLayoutError(
                f"keeps {policy.dims[1]} state f32 per agent where {old.name!r} "
                f"keeps {old_dims[1]}: the agents' state would be misread; publish a "
                "module with the same state layout",
                policy=policy.name,
            )
        return policy

    def swap(self, slot: int, spec: PolicySpec) -> None:
        """Hot swap between ticks: ``slot`` runs ``spec``'s module from the next step.

        The agents keep their state (it is in the table); the quarantine of the
        slot is lifted. Raises :class:`PolicyLoadError` (or its
        :class:`PolicyStateLayoutError`) and changes nothing when the module
        cannot take the slot over.
        """
        if not 0 <= slot < len(self._policies):
            raise IndexError(f"no policy slot {slot}")
        fresh = self._checked(spec, slot, like=slot)
        old, self._policies[slot] = self._policies[slot], fresh
        self._specs[slot] = spec
        self._quarantined.pop(slot, None)
        if old is not None:
            old.close()

    def add(self, spec: PolicySpec, *, like: int | None = None) -> int:
        """A new slot running ``spec`` (no agents yet); its index.

        With ``like``, its state layout must be slot ``like``'s (agents move
        between the two with their state). Raises like :meth:`swap`.
        """
        slot = len(self._policies)
        fresh = self._checked(spec, slot, like=like)
        self._specs.append(spec)
        self._policies.append(fresh)
        return slot

    def __len__(self) -> int:
        return len(self._policies)

    def __getitem__(self, slot: int) -> Policy | None:
        """The slot's policy (None when its module never loaded)."""
        return self._policies[slot]

    @property
    def policies(self) -> Sequence[Policy | None]:
        return tuple(self._policies)

    @property
    def quarantined(self) -> dict[int, PolicyError]:
        """Quarantined slots and the error that put each there."""
        return dict(self._quarantined)

    @property
    def quarantined_count(self) -> int:
        """Number of quarantined slots."""
        return len(self._quarantined)

    def is_quarantined(self, slot: int) -> bool:
        return slot in self._quarantined

    def name_of(self, slot: int) -> str:
        policy, spec = self._policies[slot], self._specs[slot]
        if policy is not None:
            return policy.name
        return spec.label() if spec is not None else f"slot{slot}"

    def _quarantine(self, slot: int, name: str, error: PolicyError) -> None:
        fault = PolicyFault(slot=slot, policy=name, kind=error.kind, error=error)
        self._quarantined[slot] = error
        key = (name, error.kind)
        self.fault_counts[key] = self.fault_counts.get(key, 0) + 1
        logger.warning(
            "policy %d (%s) quarantined [%s]: %s",
            slot,
            name,
            error.kind,
            error,
            extra={"policy": name, "kind": error.kind, "error": str(error)},
        )
        if self.on_fault is not None:
            self.on_fault(fault)

    def reenable(self, slot: int) -> bool:
        """Fresh instance for ``slot`` (same module and config), quarantine lifted.

        Returns whether the slot now runs; a failed reload stays quarantined
        (and counts as a new fault).
        """
        if not 0 <= slot < len(self._policies):
            raise IndexError(f"no policy slot {slot}")
        old = self._policies[slot]
        self._quarantined.pop(slot, None)
        if isinstance(old, WasmPolicy):
            try:
                fresh = old.respawn()
            except Exception as exc:
                self._quarantine(slot, old.name, _as_load_error(exc, old.name))
                return False
            old.close()
            self._policies[slot] = fresh
        elif old is None:
            self._load(slot)
        return slot not in self._quarantined

    def _safe_action(self, table: AgentTable, rows: slice | NDArray[np.intp]) -> None:
        if self.fallback == "zero":
            table.actions[rows] = 0.0

    def step(self, table: AgentTable) -> None:
        """Write ``table.actions`` (and update ``table.state``) for every agent."""
        for slot, rows in table.groups().items():
            if slot >= len(self._policies):
                raise ValueError(
                    f"agents refer to policy {slot}, but the set has {len(self._policies)}"
                )
            policy = self._policies[slot]
            if slot in self._quarantined or policy is None:
                self._safe_action(table, rows)
                continue
            dims = getattr(policy, "dims", None)
            state_dim = table.state_dim if dims is None else dims[1]
            if dims is not None and not _fits(dims, table):
                error = PolicyAbiError(
                    f"declares dims {dims}, the agent table has "
                    f"{(table.obs_dim, table.state_dim, table.act_dim)} "
                    "(obs width the table's or one more for the fresh mask, action widths equal, "
                    "state at most the table's)",
                    policy=policy.name,
                )
                self._quarantine(slot, policy.name, error)
                self._safe_action(table, rows)
                continue
            contiguous = isinstance(rows, slice)
            # A slice indexes as a view: the policy writes into the table directly.
            obs = table.observations[rows]
            if dims is not None and dims[0] == table.obs_dim + 1:  # asks for the fresh mask
                obs = np.concatenate(
                    (obs, table.fresh[rows, None].astype(np.float32)), axis=1, dtype=np.float32
                )
            state = table.state[rows, :state_dim]
            actions = table.actions[rows] if contiguous else np.empty_like(table.actions[rows])
            try:
                policy.step(obs, state, actions)
            except PolicyError as exc:
                self._quarantine(slot, policy.name, exc)
                self._safe_action(table, rows)
                continue
            if not contiguous:
                table.state[rows, :state_dim] = state
                table.actions[rows] = actions

    def close(self) -> None:
        """Close every policy. Idempotent."""
        policies, self._policies = self._policies, []
        for policy in policies:
            if policy is not None:
                policy.close()


def _as_load_error(exc: Exception, name: str) -> PolicyError:
    """``exc`` if it is a policy error, else a ``load`` fault that names it."""
    if isinstance(exc, PolicyError):
        return exc
    return PolicyLoadError(f"loading failed: {type(exc).__name__}: {exc}", policy=name)


def _fits(dims: tuple[int, int, int], table: AgentTable) -> bool:
    """A policy runs on a table with its obs width (or one more: the fresh mask as the
    last column, ABI.md), its action width and room for its state."""
    obs_dim, state_dim, act_dim = dims
    return (
        obs_dim in (table.obs_dim, table.obs_dim + 1)
        and act_dim == table.act_dim
        and state_dim <= table.state_dim
    )
