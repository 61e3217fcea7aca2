"""Hosting WebAssembly policies: one engine per process, one store per policy.

:class:`ModuleCache` owns the process's ``wasmtime.Engine`` (fuel metering on)
and compiles each distinct module once, keyed by the SHA-256 of its bytes.
:class:`WasmPolicy` is one loaded policy instance implementing ABI v0
("slice", see ``edgeswarm/agents_wasm/ABI.md``): its own store, instance and
linear memory, and three blocks in that memory (observations, state,
actions) that the host reads and writes through numpy views, without copies
through Python objects.

Every call into the module runs under fuel. Traps, fuel exhaustion and
wasmtime errors become :mod:`edgeswarm.edge.errors` errors.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import wasmtime
from numpy.typing import NDArray

from edgeswarm.edge.errors import (
    PolicyAbiError,
    PolicyError,
    PolicyFuelExhausted,
    PolicyLoadError,
    PolicyTrap,
)
from edgeswarm.resource import Resource

ABI_VERSION = 0
"""The ABI version this host speaks (``es_abi_version()`` must return it)."""

MAX_DIM = 4096
"""Largest obs/state/act dimension a module may declare."""

_F32 = np.dtype(np.float32)

_REQUIRED_FUNCS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "es_abi_version": ((), ("i32",)),
    "es_obs_dim": ((), ("i32",)),
    "es_state_dim": ((), ("i32",)),
    "es_act_dim": ((), ("i32",)),
    "es_alloc": (("i32",), ("i32",)),
    "es_step": (("i32", "i32", "i32", "i32"), ("i32",)),
}
"""Function exports of ABI v0: name -> (param types, result types)."""


@dataclass(frozen=True)
class FuelBudget:
    """Fuel given to each call: ``base + per_agent * n`` for ``es_step`` over n agents."""

    base: int = 100_000
    """Fuel for every call, whatever the agent count (covers setup and small calls)."""
    per_agent: int = 1_000
    """Additional fuel per agent for ``es_step``."""

    def for_agents(self, n: int) -> int:
        return self.base + self.per_agent * n


class ModuleCache:
    """A wasmtime engine and the modules compiled for it, by content digest."""

    _shared: ClassVar[ModuleCache | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.wasm_simd = True
        self.engine = wasmtime.Engine(config)
        self._modules: dict[str, wasmtime.Module] = {}
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> ModuleCache:
        """The process-wide cache (created on first use, never closed)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def __len__(self) -> int:
        return len(self._modules)

    def compile(self, wasm: bytes, *, name: str = "") -> wasmtime.Module:
        """The compiled module for ``wasm`` (binary, or WAT text), compiled at most once."""
        if not wasm.startswith(b"\0asm"):
            try:
                wasm = bytes(wasmtime.wat2wasm(wasm.decode("utf-8")))
            except (UnicodeDecodeError, wasmtime.WasmtimeError) as exc:
                raise PolicyLoadError(f"not a Wasm binary or WAT text: {exc}", policy=name) from exc
        digest = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            module = self._modules.get(digest)
            if module is None:
                try:
                    module = wasmtime.Module(self.engine, wasm)
                except wasmtime.WasmtimeError as exc:
                    raise PolicyLoadError(f"invalid Wasm module: {exc}", policy=name) from exc
                self._modules[digest] = module
            return module


def _type_names(types: Any) -> tuple[str, ...]:
    return tuple(str(t) for t in types)


def _check_module(module: wasmtime.Module, name: str) -> None:
    """Refuse modules with imports or without the ABI v0 exports."""
    imports = [f"{imp.module}.{imp.name}" for imp in module.imports]
    if imports:
        raise PolicyLoadError(
            f"imports are not allowed in ABI v0, module imports: {', '.join(imports)}",
            policy=name,
        )
    exports = {export.name: export.type for export in module.exports}
    problems: list[str] = []
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        problems.append("missing export 'memory' (a memory)")
    for func, (params, results) in _REQUIRED_FUNCS.items():
        ty = exports.get(func)
        if ty is None:
            problems.append(f"missing export {func!r}")
        elif not isinstance(ty, wasmtime.FuncType):
            problems.append(f"export {func!r} is not a function")
        elif (_type_names(ty.params), _type_names(ty.results)) != (params, results):
            problems.append(
                f"export {func!r} has type ({', '.join(_type_names(ty.params))}) -> "
                f"({', '.join(_type_names(ty.results))}), expected ({', '.join(params)}) -> "
                f"({', '.join(results)})"
            )
    if problems:
        raise PolicyLoadError("; ".join(problems), policy=name)


class WasmPolicy(Resource):
    """One instance of an ABI v0 policy module.

    ``module`` is the Wasm binary (or WAT text) as bytes, or a path to a
    ``.wasm`` file. Loading validates imports, exports, the ABI version and the
    dimensions, and raises :class:`PolicyLoadError` naming what is wrong.
    """

    def __init__(
        self,
        module: bytes | str | os.PathLike[str],
        *,
        name: str | None = None,
        fuel: FuelBudget | None = None,
        cache: ModuleCache | None = None,
    ) -> None:
        if isinstance(module, bytes):
            wasm = module
            self.name = name if name is not None else "<bytes>"
        else:
            path = Path(module)
            self.name = name if name is not None else path.stem
            try:
                wasm = path.read_bytes()
            except OSError as exc:
                raise PolicyLoadError(f"cannot read {path}: {exc}", policy=self.name) from exc
        self.fuel = fuel if fuel is not None else FuelBudget()
        self._cache = cache if cache is not None else ModuleCache.shared()
        compiled = self._cache.compile(wasm, name=self.name)
        _check_module(compiled, self.name)

        self._store: wasmtime.Store | None = wasmtime.Store(self._cache.engine)
        self._store.set_fuel(self.fuel.base)
        try:
            instance = wasmtime.Instance(self._store, compiled, [])
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            self._store = None
            raise PolicyLoadError(f"instantiation failed: {exc}", policy=self.name) from exc
        exports = instance.exports(self._store)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self._memory = memory
        self._funcs: dict[str, wasmtime.Func] = {}
        for func in _REQUIRED_FUNCS:
            export = exports[func]
            assert isinstance(export, wasmtime.Func)
            self._funcs[func] = export

        try:
            version = self._call("es_abi_version", self.fuel.base)
            dims = [
                self._call(f, self.fuel.base) for f in ("es_obs_dim", "es_state_dim", "es_act_dim")
            ]
        except PolicyError as exc:
            self.close()
            raise PolicyLoadError(f"ABI query failed: {exc}", policy=self.name) from exc
        if version != ABI_VERSION:
            self.close()
            raise PolicyLoadError(
                f"es_abi_version() returned {version}, this host speaks {ABI_VERSION}",
                policy=self.name,
            )
        if not all(0 <= d <= MAX_DIM for d in dims) or dims[0] == 0 or dims[2] == 0:
            self.close()
            raise PolicyLoadError(
                f"bad dimensions obs={dims[0]} state={dims[1]} act={dims[2]} "
                f"(obs and act must be 1..{MAX_DIM}, state 0..{MAX_DIM})",
                policy=self.name,
            )
        self.obs_dim, self.state_dim, self.act_dim = dims

        self.capacity = 0
        """Agents the allocated blocks can hold."""
        self.offsets = (0, 0, 0)
        """Byte offsets of the obs, state and act blocks in linear memory."""
        self._memory_key = (0, 0)
        self._obs_block: NDArray[np.float32] = np.empty((0, self.obs_dim), _F32)
        self._state_block: NDArray[np.float32] = np.empty((0, self.state_dim), _F32)
        self._act_block: NDArray[np.float32] = np.empty((0, self.act_dim), _F32)

    # -- lifecycle --------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._store is None

    def close(self) -> None:
        """Drop the views, the instance and the store. Idempotent."""
        self._obs_block = self._state_block = self._act_block = np.empty((0, 0), _F32)
        self._funcs = {}
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"capacity={self.capacity}"
        return f"<WasmPolicy {self.name!r} dims={self.dims} {state}>"

    @property
    def dims(self) -> tuple[int, int, int]:
        """``(obs_dim, state_dim, act_dim)`` declared by the module."""
        return (self.obs_dim, self.state_dim, self.act_dim)

    # -- calls -------------------------------------------------------------------

    def _live_store(self) -> wasmtime.Store:
        if self._store is None:
            raise PolicyError("policy is closed", policy=self.name)
        return self._store

    def _call(self, func: str, fuel: int, *args: int) -> int:
        """Call an export under ``fuel``; map every wasmtime failure to our errors."""
        store = self._live_store()
        store.set_fuel(fuel)
        target: Callable[..., Any] = self._funcs[func]
        try:
            result = target(store, *args)
        except wasmtime.Trap as exc:
            if exc.trap_code == wasmtime.TrapCode.OUT_OF_FUEL:
                raise PolicyFuelExhausted(
                    f"{func} ran out of fuel (budget {fuel})", policy=self.name
                ) from exc
            raise PolicyTrap(f"{func} trapped: {exc.message}", policy=self.name) from exc
        except wasmtime.WasmtimeError as exc:
            raise PolicyTrap(f"{func} failed: {exc}", policy=self.name) from exc
        if not isinstance(result, int):
            raise PolicyAbiError(f"{func} returned {result!r}, expected an i32", policy=self.name)
        return result

    @property
    def fuel_left(self) -> int:
        """Fuel left in the store after the last call."""
        return int(self._live_store().get_fuel())

    # -- memory ------------------------------------------------------------------

    def _refresh_views(self) -> None:
        """(Re)build the numpy views over linear memory if it moved or grew."""
        store = self._live_store()
        size = self._memory.data_len(store)
        base = _address(self._memory.data_ptr(store))
        if (base, size) == self._memory_key:
            return
        buffer: Any = self._memory.get_buffer_ptr(store, size)
        memory: NDArray[np.uint8] = np.frombuffer(buffer, dtype=np.uint8)
        cap = self.capacity
        obs_at, state_at, act_at = self.offsets

        def block(offset: int, dim: int) -> NDArray[np.float32]:
            raw = memory[offset : offset + cap * dim * 4]
            floats: NDArray[np.float32] = raw.view(np.float32).reshape(cap, dim)
            return floats

        self._obs_block = block(obs_at, self.obs_dim)
        self._state_block = block(state_at, self.state_dim)
        self._act_block = block(act_at, self.act_dim)
        self._memory_key = (base, size)

    def _alloc(self, nbytes: int) -> int:
        pointer = self._call("es_alloc", self.fuel.base, nbytes)
        size = self._memory.data_len(self._live_store())
        if pointer <= 0 or pointer % 16 or pointer + nbytes > size:
            raise PolicyAbiError(
                f"es_alloc({nbytes}) returned {pointer} (memory is {size} bytes)",
                policy=self.name,
                status=pointer,
            )
        return pointer

    def reserve(self, count: int) -> None:
        """Make sure the blocks hold ``count`` agents (allocating about 1.5x when growing).

        ABI v0 has no free: outgrown blocks stay allocated in the module.
        """
        if count <= self.capacity:
            return
        capacity = max(count, self.capacity + self.capacity // 2, 16)
        offsets = (
            self._alloc(capacity * self.obs_dim * 4),
            self._alloc(capacity * self.state_dim * 4),
            self._alloc(capacity * self.act_dim * 4),
        )
        old_state = self._state_block.copy() if self.capacity else None
        self.capacity, self.offsets = capacity, offsets
        self._memory_key = (0, 0)
        self._refresh_views()
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

    def read_memory(self, offset: int, size: int) -> bytes:
        """Copy ``size`` bytes of linear memory (through wasmtime, not the views)."""
        return bytes(self._memory.read(self._live_store(), offset, offset + size))

    # -- stepping ----------------------------------------------------------------

    def step(
        self,
        obs: NDArray[np.float32],
        state: NDArray[np.float32],
        out_actions: NDArray[np.float32],
    ) -> None:
        """Run ``es_step`` once over ``n = len(obs)`` agents.

        Copies ``obs`` and ``state`` into linear memory, calls the module, then
        copies the actions into ``out_actions`` and the new state back into
        ``state`` (in place). On any error ``state`` and ``out_actions`` are
        left untouched.
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
        obs_at, state_at, act_at = self.offsets
        status = self._call("es_step", self.fuel.for_agents(n), n, obs_at, state_at, act_at)
        if status != 0:
            raise PolicyAbiError(
                f"es_step returned status {status}", policy=self.name, status=status
            )
        self._refresh_views()  # the module may have grown its memory
        out_actions[...] = self._act_block[:n]
        state[...] = self._state_block[:n]


def _address(pointer: Any) -> int:
    """Integer address of a ctypes pointer's target (0 for a null pointer)."""
    return ctypes.cast(pointer, ctypes.c_void_p).value or 0
