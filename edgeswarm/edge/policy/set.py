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
  module that fails to load: nothing changes. Unless it exports ``es_migrate``
  and the caller gives the table: then the slot's agents' state is migrated by
  it, every row or none (:class:`~edgeswarm.edge.policy.errors.PolicyMigrationError`
  when it fails: the old version runs on, its state untouched).
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
    PolicyMigrationError,
    PolicyStateLayoutError,
)
from edgeswarm.edge.policy.heavy import HeavyLaneSeam
from edgeswarm.edge.policy.migration import migrate_state
from edgeswarm.edge.policy.module_cache import ModuleCache, ModuleSource
from edgeswarm.edge.policy.sandbox import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MEMORY_LIMIT,
    FuelBudget,
    HostCallCap,
)
from edgeswarm.edge.policy.swarm_state import LocalSwarmState, SwarmState
from edgeswarm.edge.policy.wasm_host import WasmPolicy
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

    def state_dim_of(self, slot: int) -> int | None:
        """The slot's state layout (f32 per agent), None when its module never loaded."""
        dims = getattr(self._policies[slot], "dims", None)
        return None if dims is None else int(dims[1])

    def _checked(
        self, spec: PolicySpec, slot: int, like: int | None, table: AgentTable | None
    ) -> WasmPolicy:
        """A loaded instance of ``spec`` for ``slot`` that can take ``like``'s agents:
        the same state layout, or (with ``table``) an ``es_migrate`` export."""
        try:
            policy = self._instance(spec, slot)
        except Exception as exc:
            raise _as_load_error(exc, spec.label()) from exc
        old = self._policies[like] if like is not None else None
        old_dim = self.state_dim_of(like) if like is not None else None
        if old is None or old_dim is None or old_dim == policy.state_dim:
            return policy
        if table is None or not policy.migrates:
            policy.close()
            raise PolicyStateLayoutError(
                f"keeps {policy.state_dim} state f32 per agent where {old.name!r} "
                f"keeps {old_dim}: the agents' state would be misread; publish a module "
                "with the same state layout, or one that exports es_migrate (ABI.md)",
                policy=policy.name,
            )
        return policy

    def _migrated(
        self, policy: WasmPolicy, old_dim: int, table: AgentTable, rows: NDArray[np.intp]
    ) -> NDArray[np.float32]:
        """``rows``' state converted by ``policy``'s ``es_migrate`` from ``old_dim`` f32."""
        if policy.state_dim > table.state_dim:
            raise PolicyMigrationError(
                f"keeps {policy.state_dim} state f32 per agent, the agent table {table.state_dim}",
                policy=policy.name,
                cause="abi",
            )
        try:
            return migrate_state(policy, np.ascontiguousarray(table.state[rows, :old_dim]))
        except PolicyError as exc:
            raise PolicyMigrationError(
                f"es_migrate of {len(rows)} agents from {old_dim} state f32 failed "
                f"[{exc.kind}]: {exc.detail}; the old version keeps running, no state changed",
                policy=policy.name,
                cause=exc.kind,
            ) from exc

    @staticmethod
    def _commit(table: AgentTable, rows: NDArray[np.intp], state: NDArray[np.float32]) -> None:
        """Write migrated rows: the new layout's columns, zeros after them."""
        width = state.shape[1]
        table.state[rows, :width] = state
        table.state[rows, width:] = 0.0

    def swap(self, slot: int, spec: PolicySpec, *, table: AgentTable | None = None) -> None:
        """Hot swap between ticks: ``slot`` runs ``spec``'s module from the next step.

        The agents keep their state (it is in the table); the quarantine of the
        slot is lifted. When the new module keeps another state layout, it must
        export ``es_migrate`` and ``table`` must be given: every agent of the slot
        is migrated, all or none. Raises :class:`PolicyLoadError` (a
        :class:`PolicyStateLayoutError`, a :class:`PolicyMigrationError`) and changes
        nothing when the module cannot take the slot over.
        """
        if not 0 <= slot < len(self._policies):
            raise IndexError(f"no policy slot {slot}")
        fresh = self._checked(spec, slot, like=slot, table=table)
        old_dim = self.state_dim_of(slot)
        if table is not None and old_dim is not None and old_dim != fresh.state_dim:
            rows = np.flatnonzero(table.policy == slot)
            try:
                migrated = self._migrated(fresh, old_dim, table, rows)
            except PolicyError:
                fresh.close()
                raise
            self._commit(table, rows, migrated)
        old, self._policies[slot] = self._policies[slot], fresh
        self._specs[slot] = spec
        self._quarantined.pop(slot, None)
        if old is not None:
            old.close()

    def add(
        self, spec: PolicySpec, *, like: int | None = None, table: AgentTable | None = None
    ) -> int:
        """A new slot running ``spec`` (no agents yet); its index.

        With ``like``, agents move between the two with their state: its state
        layout must be slot ``like``'s, or, given ``table``, it must export
        ``es_migrate`` and migrate the state of ``like``'s agents now (a trial:
        nothing is written; :meth:`migrate_rows` moves agents). Raises like
        :meth:`swap`.
        """
        slot = len(self._policies)
        fresh = self._checked(spec, slot, like=like, table=table)
        old_dim = self.state_dim_of(like) if like is not None else None
        if table is not None and old_dim is not None and old_dim != fresh.state_dim:
            try:
                self._migrated(fresh, old_dim, table, np.flatnonzero(table.policy == like))
            except PolicyError:
                fresh.close()
                raise
        self._specs.append(spec)
        self._policies.append(fresh)
        return slot

    def migrate_rows(
        self, slot: int, *, from_slot: int, table: AgentTable, rows: NDArray[np.intp]
    ) -> None:
        """Convert ``rows``' state from ``from_slot``'s layout to ``slot``'s, by ``slot``'s
        ``es_migrate``, before those agents move to ``slot``; all rows or none.

        Raises :class:`PolicyMigrationError` (no state changed) or
        :class:`PolicyStateLayoutError` when ``slot``'s module cannot migrate.
        """
        policy, old_dim = self._policies[slot], self.state_dim_of(from_slot)
        if not isinstance(policy, WasmPolicy) or old_dim is None or not policy.migrates:
            raise PolicyStateLayoutError(
                f"slot {slot} cannot take slot {from_slot}'s state layout over",
                policy=self.name_of(slot),
            )
        self._commit(table, rows, self._migrated(policy, old_dim, table, rows))

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
