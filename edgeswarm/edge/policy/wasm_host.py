"""One loaded policy: an ABI v1 module instance in its own sandboxed store.

:class:`WasmPolicy` implements the host side of ``edgeswarm/agents_wasm/ABI.md``:
it checks the imports (:mod:`~edgeswarm.edge.policy.host_imports`) and exports
(:mod:`~edgeswarm.edge.policy.abi`), instantiates the module in a fresh store, checks
``es_abi_version() == 1``, reads and checks the descriptor, passes the config
blob to ``es_init``, and allocates three blocks in linear memory
(observations, state, actions) that the host fills and reads through numpy
views (rebuilt when memory grows), one ``es_step`` per tick.

Sandbox, per instance (:mod:`~edgeswarm.edge.policy.sandbox`): every call runs
under fuel (:class:`FuelBudget`), a cap on its host calls (:class:`HostCallCap`)
and a wall-clock deadline (``deadline_s``, an epoch deadline:
:mod:`~edgeswarm.edge.policy.deadline`); the store limits linear memory
(``memory_limit``, default 64 MiB: ``memory.grow`` past it returns -1),
tables, instances and memories; the only imports are the ``"es"`` host
functions, so no WASI, files, sockets, clock or randomness beyond them.
Traps, fuel exhaustion, deadlines and wasmtime errors become
:mod:`edgeswarm.edge.policy.errors` errors, and so does anything else that
goes wrong while loading (:class:`PolicyLoadError`). Each step's actions are
validated (:mod:`~edgeswarm.edge.policy.actions`) before they are copied out.
"""

from __future__ import annotations

import ctypes
import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import wasmtime
from numpy.typing import NDArray

from edgeswarm.edge.policy.abi import (
    ABI_VERSION,
    MAX_DESCRIPTOR_BYTES,
    MIGRATE_FUNC,
    REQUIRED_FUNCS,
    Descriptor,
    check_exports,
    parse_descriptor,
    split_location,
)
from edgeswarm.edge.policy.actions import ActionCheck
from edgeswarm.edge.policy.deadline import EpochTicker, ticker_for, ticking
from edgeswarm.edge.policy.errors import PolicyAbiError, PolicyError, PolicyLoadError
from edgeswarm.edge.policy.export_call import ExportCall, export_caller
from edgeswarm.edge.policy.heavy import HeavyLaneSeam
from edgeswarm.edge.policy.host_imports import HostContext, check_imports
from edgeswarm.edge.policy.module_cache import (
    ModuleCache,
    ModuleSource,
    compile_source,
    provisional_name,
)
from edgeswarm.edge.policy.sandbox import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MEMORY_LIMIT,
    NO_EPOCH_DEADLINE,
    FuelBudget,
    HostCallCap,
    guarded_call,
    limited_store,
)
from edgeswarm.edge.policy.swarm_state import LocalSwarmState, SwarmState
from edgeswarm.models import ModelRegistry
from edgeswarm.resource import Resource

_F32 = np.dtype(np.float32)


class WasmPolicy(Resource):
    """One instance of an ABI v1 policy module.

    Loading raises :class:`PolicyLoadError` naming what is wrong (whatever
    went wrong: an unexpected exception while loading is one too), or the
    error ``es_init`` caused (:class:`PolicyAbiError` for a nonzero status).
    ``name`` defaults to the descriptor's name. ``seed`` and ``slot`` seed
    ``random_fill``; ``swarm`` and ``models`` back the shared-state and
    ``model_infer`` imports (a private :class:`LocalSwarmState` and no models
    by default). ``deadline_s`` bounds each call's wall-clock time (None: no
    bound); ``validate_actions=False`` skips the action check (benchmarks only).
    """

    def __init__(
        self,
        module: ModuleSource,
        *,
        name: str | None = None,
        config: bytes = b"",
        fuel: FuelBudget | None = None,
        host_calls: HostCallCap | None = None,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        deadline_s: float | None = DEFAULT_DEADLINE_S,
        validate_actions: bool = True,
        cache: ModuleCache | None = None,
        swarm: SwarmState | None = None,
        models: ModelRegistry | None = None,
        heavy: HeavyLaneSeam | None = None,
        seed: int = 0,
        slot: int = 0,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if deadline_s is not None and not deadline_s > 0:
            raise ValueError(f"deadline_s must be positive or None, got {deadline_s!r}")
        self.name = name if name is not None else provisional_name(module)
        self.config = bytes(config)
        self.fuel = fuel if fuel is not None else FuelBudget()
        self.host_calls = host_calls if host_calls is not None else HostCallCap()
        self.memory_limit = memory_limit
        self.deadline_s = deadline_s
        """Wall-clock limit of each call into the module, seconds (None: none)."""
        self.validate_actions = validate_actions
        self._given_name = name
        self._cache = cache if cache is not None else ModuleCache.shared()
        self._context = HostContext(
            policy=self.name,
            swarm=swarm if swarm is not None else LocalSwarmState(),
            models=models,
            heavy=heavy,
            seed=seed,
            slot=slot,
            clock=clock,
        )
        self._seed, self._slot, self._clock = seed, slot, clock
        self._store: wasmtime.Store | None = None
        self._memory: wasmtime.Memory | None = None
        self._funcs: dict[str, wasmtime.Func] = {}
        self._abi_calls: dict[str, ExportCall] = {}
        self._ticker: EpochTicker | None = None
        self._epoch_ticks: int | None = None
        self.capacity = 0
        """Agents the allocated blocks can hold."""
        self.offsets = (0, 0, 0)
        """Byte offsets of the obs, state and act blocks in linear memory."""
        self._memory_key = (0, 0)
        try:
            self.compiled = compile_source(module, self._cache, self.name)
            """The compiled module (``respawn`` instantiates it again)."""
            check_imports(self.compiled.module, self.name)
            check_exports(self.compiled.module, self.name)
            self._store = limited_store(self.compiled.engine, memory_limit)
            self._start_deadline()
            self.descriptor = self._instantiate()
            self.obs_dim, self.state_dim, self.act_dim = self.descriptor.dims
            if name is None:
                self.name = self._context.policy = self.descriptor.name
            self._action_check = ActionCheck(self.act_dim, self.descriptor.act_bounds)
            self._init()
        except BaseException as exc:
            self.close()
            if isinstance(exc, PolicyError) or not isinstance(exc, Exception):
                raise
            raise PolicyLoadError(
                f"loading failed: {type(exc).__name__}: {exc}", policy=self.name
            ) from exc
        self._obs_block: NDArray[np.float32] = np.empty((0, self.obs_dim), _F32)
        self._state_block: NDArray[np.float32] = np.empty((0, self.state_dim), _F32)
        self._act_block: NDArray[np.float32] = np.empty((0, self.act_dim), _F32)

    def _start_deadline(self) -> None:
        """Epoch deadline of every call (an engine with epochs needs one even without a bound)."""
        if not self.compiled.settings.epoch_interruption:
            return
        if self.deadline_s is None:
            self._epoch_ticks = NO_EPOCH_DEADLINE
            return
        self._ticker = ticker_for(self.compiled.engine)
        self._ticker.hold()
        self._epoch_ticks = self._ticker.ticks_for(self.deadline_s)

    def _instantiate(self) -> Descriptor:
        store = self._live_store()
        store.set_fuel(self.fuel.base)  # the start function runs under the same budget
        if self._epoch_ticks is not None:
            store.set_epoch_deadline(self._epoch_ticks)
        self._context.begin_call(host_calls=self.host_calls.base, deadline_s=self.deadline_s)
        module = self.compiled.module
        try:
            with ticking(self._ticker):  # the start function runs under the deadline too
                imports = self._context.imports_for(store, module)
                instance = wasmtime.Instance(store, module, imports)
        except PolicyError as exc:
            raise PolicyLoadError(f"start function failed: {exc.detail}", policy=self.name) from exc
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise PolicyLoadError(f"instantiation failed: {exc}", policy=self.name) from exc
        exports = instance.exports(store)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self._memory = self._context.memory = memory
        for export_name in exports:
            export = exports[export_name]
            if isinstance(export, wasmtime.Func):
                self._funcs[export_name] = export
        for func, (params, results) in REQUIRED_FUNCS.items():  # types checked at load
            self._abi_calls[func] = export_caller(store, self._funcs[func], params, results[0])
        try:
            version = self._call("es_abi_version", self.fuel.base)
            location = self._call("es_describe", self.fuel.base)
        except PolicyError as exc:
            raise PolicyLoadError(f"ABI query failed: {exc.detail}", policy=self.name) from exc
        if version != ABI_VERSION:
            raise PolicyLoadError(
                f"es_abi_version() returned {version}, this host speaks {ABI_VERSION}",
                policy=self.name,
            )
        ptr, length = split_location(location)
        size = memory.data_len(store)
        if length > MAX_DESCRIPTOR_BYTES or ptr + length > size:
            raise PolicyLoadError(
                f"es_describe() points at {length} bytes at {ptr}: out of bounds "
                f"(memory is {size} bytes, descriptor at most {MAX_DESCRIPTOR_BYTES})",
                policy=self.name,
            )
        descriptor = parse_descriptor(self.read_memory(ptr, length), self.name)
        self._context.descriptor = descriptor
        return descriptor

    def _init(self) -> None:
        ptr = self.alloc(len(self.config)) if self.config else 0
        if self.config:
            self._live_memory().write(self._live_store(), self.config, ptr)
        status = self._call("es_init", self.fuel.base, ptr, len(self.config))
        if status != 0:
            raise PolicyAbiError(
                f"es_init refused the config ({len(self.config)} bytes): status {status}",
                policy=self.name,
                status=status,
            )

    def respawn(self) -> WasmPolicy:
        """A fresh instance of the same compiled module, initialized with the same config."""
        return WasmPolicy(
            self.compiled,
            name=self._given_name,
            config=self.config,
            fuel=self.fuel,
            host_calls=self.host_calls,
            memory_limit=self.memory_limit,
            deadline_s=self.deadline_s,
            validate_actions=self.validate_actions,
            cache=self._cache,
            swarm=self._context.swarm,
            models=self._context.models,
            heavy=self._context.heavy,
            seed=self._seed,
            slot=self._slot,
            clock=self._clock,
        )

    # -- lifecycle --------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._store is None

    def close(self) -> None:
        """Drop the views, the instance and the store; release the epoch ticker. Idempotent."""
        self._obs_block = self._state_block = self._act_block = np.empty((0, 0), _F32)
        self._funcs = {}
        self._abi_calls = {}
        self._memory = self._context.memory = None
        store, self._store = self._store, None
        if store is not None:
            store.close()
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.release()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"capacity={self.capacity}"
        return f"<WasmPolicy {self.name!r} dims={self.dims} {state}>"

    @property
    def dims(self) -> tuple[int, int, int]:
        """``(obs_dim, state_dim, act_dim)`` declared by the module."""
        return (self.obs_dim, self.state_dim, self.act_dim)

    @property
    def logs_dropped(self) -> int:
        """``es.log`` messages dropped (rate limit or bad pointer)."""
        return self._context.logs_dropped

    # -- calls -------------------------------------------------------------------

    def _live_store(self) -> wasmtime.Store:
        if self._store is None:
            raise PolicyError("policy is closed", policy=self.name)
        return self._store

    def _live_memory(self) -> wasmtime.Memory:
        if self._memory is None:
            raise PolicyError("policy is closed", policy=self.name)
        return self._memory

    def _call(self, func: str, fuel: int, *args: int, host_calls: int | None = None) -> int:
        """Call an export under ``fuel``, the host-call cap and the deadline (:mod:`.sandbox`)."""
        store = self._live_store()
        memory = self._memory
        self._context.begin_call(
            host_calls=self.host_calls.base if host_calls is None else host_calls,
            deadline_s=self.deadline_s,
        )
        call = self._abi_calls.get(func)
        if call is None:
            call = functools.partial(self._funcs[func], store)
        with ticking(self._ticker):
            return guarded_call(
                store,
                call,
                fuel,
                *args,
                label=func,
                policy=self.name,
                memory_size=lambda: memory.data_len(store) if memory is not None else 0,
                memory_limit=self.memory_limit,
                epoch_ticks=self._epoch_ticks,
                deadline_s=self.deadline_s,
            )

    def call_for_agents(self, export: str, n: int, *pointers: int) -> int:
        """``export(n, *pointers)`` over ``n`` agents, under ``es_step``'s budgets for ``n``."""
        self._context.step_agents = n
        return self._call(
            export, self.fuel.for_agents(n), n, *pointers, host_calls=self.host_calls.for_agents(n)
        )

    def write_memory(self, offset: int, data: bytes) -> None:
        """Copy ``data`` into linear memory at ``offset`` (through wasmtime, bounds-checked)."""
        self._live_memory().write(self._live_store(), data, offset)

    def call(self, export: str, *args: int) -> int:
        """Call an exported integer function under the base fuel (for tools and tests)."""
        if export not in self._funcs:
            raise KeyError(f"{self.name} exports no function {export!r}")
        return self._call(export, self.fuel.base, *args)

    @property
    def fuel_left(self) -> int:
        """Fuel left in the store after the last call."""
        return int(self._live_store().get_fuel())

    # -- memory ------------------------------------------------------------------

    def _refresh_views(self) -> None:
        """(Re)build the numpy views over linear memory if it grew (and so maybe moved).

        A linear memory only moves when it grows, so its size alone says whether
        the views still hold (one call into wasmtime per check, not two).
        """
        store = self._live_store()
        memory = self._live_memory()
        size = memory.data_len(store)
        if size == self._memory_key[1]:
            return
        base = _address(memory.data_ptr(store))
        buffer: Any = memory.get_buffer_ptr(store, size)
        whole: NDArray[np.uint8] = np.frombuffer(buffer, dtype=np.uint8)
        cap = self.capacity
        obs_at, state_at, act_at = self.offsets

        def block(offset: int, dim: int) -> NDArray[np.float32]:
            raw = whole[offset : offset + cap * dim * 4]
            floats: NDArray[np.float32] = raw.view(np.float32).reshape(cap, dim)
            return floats

        self._obs_block = block(obs_at, self.obs_dim)
        self._state_block = block(state_at, self.state_dim)
        self._act_block = block(act_at, self.act_dim)
        self._memory_key = (base, size)

    def alloc(self, nbytes: int) -> int:
        """``es_alloc(nbytes)`` under the base fuel: a checked, 16-byte aligned offset."""
        pointer = self._call("es_alloc", self.fuel.base, nbytes) & 0xFFFF_FFFF
        size = self._live_memory().data_len(self._live_store())
        if pointer == 0 or pointer % 16 or pointer + nbytes > size:
            raise PolicyAbiError(
                f"es_alloc({nbytes}) returned {pointer} (memory is {size} bytes)",
                policy=self.name,
                status=pointer,
            )
        return pointer

    def reserve(self, count: int) -> None:
        """Make sure the blocks hold ``count`` agents (allocating about 1.5x when growing).

        The ABI has no free: outgrown blocks stay allocated in the module.
        New state rows start zeroed; existing ones are carried over.
        """
        if count <= self.capacity:
            return
        capacity = max(count, self.capacity + self.capacity // 2, 16)
        old_state = self._state_block.copy() if self.capacity else None
        offsets = (
            self.alloc(capacity * self.obs_dim * 4),
            self.alloc(capacity * self.state_dim * 4),
            self.alloc(capacity * self.act_dim * 4),
        )
        self.capacity, self.offsets = capacity, offsets
        self._memory_key = (0, 0)
        self._refresh_views()
        self._state_block[...] = 0.0
        if old_state is not None:
            self._state_block[: old_state.shape[0]] = old_state

    @property
    def obs_block(self) -> NDArray[np.float32]:
        """View of the observation block in linear memory, ``(capacity, obs_dim)``."""
        self._refresh_views()
        return self._obs_block

    @property
    def state_block(self) -> NDArray[np.float32]:
        """View of the state block in linear memory, ``(capacity, state_dim)``."""
        self._refresh_views()
        return self._state_block

    @property
    def act_block(self) -> NDArray[np.float32]:
        """View of the action block in linear memory, ``(capacity, act_dim)``."""
        self._refresh_views()
        return self._act_block

    @property
    def memory_bytes(self) -> int:
        """Current size of the module's linear memory, bytes."""
        return int(self._live_memory().data_len(self._live_store()))

    def read_memory(self, offset: int, size: int) -> bytes:
        """Copy ``size`` bytes of linear memory (through wasmtime, not the views)."""
        return bytes(self._live_memory().read(self._live_store(), offset, offset + size))

    # -- stepping ----------------------------------------------------------------

    def step(
        self,
        obs: NDArray[np.float32],
        state: NDArray[np.float32],
        out_actions: NDArray[np.float32],
    ) -> None:
        """Run ``es_step`` once over ``n = len(obs)`` agents.

        Copies ``obs`` and ``state`` into linear memory, calls the module, checks
        the actions (finite, within ``act_bounds``), then copies them into
        ``out_actions`` and the new state back into ``state`` (in place). On
        any error ``state`` and ``out_actions`` are left untouched.
        """
        n = obs.shape[0]
        for label, array, dim in (
            ("obs", obs, self.obs_dim),
            ("state", state, self.state_dim),
            ("out_actions", out_actions, self.act_dim),
        ):
            if array.dtype != _F32 or array.shape != (n, dim):
                raise ValueError(
                    f"{label} must be float32 of shape {(n, dim)}, got {array.dtype} {array.shape}"
                )
        if n == 0:
            return
        self.reserve(n)
        self._refresh_views()
        self._obs_block[:n] = obs
        self._state_block[:n] = state
        status = self.call_for_agents("es_step", n, *self.offsets)
        if status != 0:
            raise PolicyAbiError(
                f"es_step returned status {status}", policy=self.name, status=status
            )
        self._refresh_views()  # the module may have grown its memory
        if self.validate_actions:
            self._action_check.check(self._act_block[:n], policy=self.name)
        out_actions[...] = self._act_block[:n]
        state[...] = self._state_block[:n]

    # -- migrating ---------------------------------------------------------------

    @property
    def migrates(self) -> bool:
        """Whether the module exports ``es_migrate`` (see :mod:`.migration`)."""
        return MIGRATE_FUNC in self._funcs


def _address(pointer: Any) -> int:
    """Integer address of a ctypes pointer's target (0 for a null pointer)."""
    return ctypes.cast(pointer, ctypes.c_void_p).value or 0
