"""The host functions a policy may import: one table, one context per policy.

:data:`HOST_IMPORTS` is the linker table, the only place a host function is
declared: import name (module ``"es"``) -> signature, fuel cost, and the
:class:`HostContext` method implementing it. :func:`check_imports` refuses a
module importing anything else (or an ``"es"`` name with another signature),
naming the import and its type.

A :class:`HostContext` is the state one policy instance's imports see: its
seeded generator (PCG64 from ``(edge seed, policy slot)``), its load time,
its log rate limit, its descriptor (for the shared-state and model keys it
may touch), the shared :class:`~edgeswarm.edge.policy.swarm_state.SwarmState` and
the :class:`~edgeswarm.models.ModelRegistry`.

Every host function reaches the guest's memory through the ``Caller`` and
bounds-checks each pointer/length against the memory's current size. A bad
pointer gives the error code ABI.md documents (``-1``/``-2``); the two
imports without a result behave like a guest memory access out of bounds:
``random_fill`` traps (:class:`~edgeswarm.edge.policy.errors.PolicyTrap`) and
``log`` drops the message. Each call first charges its fuel cost to the
store; a call that cannot pay ends the guest call with
:class:`~edgeswarm.edge.policy.errors.PolicyFuelExhausted`. No Python exception
other than a :class:`~edgeswarm.edge.policy.errors.PolicyError` leaves a host
function (it comes out of the guest call that made the import).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import numpy as np
import wasmtime
from numpy.typing import NDArray

from edgeswarm.edge.policy.abi import MAX_SET_ITEM_BYTES, Descriptor, describe_type, type_names
from edgeswarm.edge.policy.errors import (
    PolicyError,
    PolicyFuelExhausted,
    PolicyLoadError,
    PolicyTrap,
)
from edgeswarm.edge.policy.swarm_state import SwarmState
from edgeswarm.models import ModelError, ModelInputError, ModelNotFound, ModelRegistry

IMPORT_MODULE: Final = "es"
"""The only import module a policy may name."""

MAX_LOG_BYTES: Final = 1024
"""Longest log message kept (longer ones are cut)."""

LOG_BURST: Final = 20
"""Log messages a policy may emit at once before the rate limit applies."""

LOG_PER_SECOND: Final = 10.0
"""Sustained log messages per second per policy."""

agent_logger = logging.getLogger("edgeswarm.edge.agent")
"""Where ``es.log`` messages go (``extra={"policy": name}``)."""

_LEVELS: Final = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
_MASK32: Final = 0xFFFF_FFFF


@dataclass(frozen=True)
class HostImport:
    """One entry of the linker table."""

    params: tuple[str, ...]
    results: tuple[str, ...]
    fuel: int
    """Fuel charged per call (before any per-byte/per-row cost)."""
    method: str
    """Name of the :class:`HostContext` method implementing it."""

    def func_type(self) -> wasmtime.FuncType:
        kinds = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64()}
        return wasmtime.FuncType([kinds[p] for p in self.params], [kinds[r] for r in self.results])


HOST_IMPORTS: Final[dict[str, HostImport]] = {
    "log": HostImport(("i32", "i32", "i32"), (), 200, "log"),
    "time_ns": HostImport((), ("i64",), 20, "time_ns"),
    "random_fill": HostImport(("i32", "i32"), (), 50, "random_fill"),
    "counter_add": HostImport(("i32", "i32", "i64"), ("i32",), 50, "counter_add"),
    "set_add": HostImport(("i32", "i32", "i32", "i32"), ("i32",), 50, "set_add"),
    "flag_get": HostImport(("i32", "i32"), ("i32",), 50, "flag_get"),
    "model_infer": HostImport(("i32", "i32", "i32", "i32", "i32"), ("i32",), 500, "model_infer"),
    "model_dims": HostImport(("i32", "i32"), ("i64",), 50, "model_dims"),
}
"""Every host function, by import name in module ``"es"``."""


def check_imports(module: wasmtime.Module, name: str) -> None:
    """Refuse a module importing anything but :data:`HOST_IMPORTS` with their exact types."""
    problems: list[str] = []
    for imp in module.imports:
        ty = imp.type
        where = f"{imp.module}.{imp.name}"
        entry = HOST_IMPORTS.get(imp.name or "") if imp.module == IMPORT_MODULE else None
        if entry is None:
            problems.append(f"forbidden import {where} ({describe_type(ty)})")
        elif not isinstance(ty, wasmtime.FuncType) or (
            type_names(ty.params),
            type_names(ty.results),
        ) != (entry.params, entry.results):
            problems.append(
                f"import {where} has type {describe_type(ty)}, expected "
                f"{describe_type(entry.func_type())}"
            )
    if problems:
        raise PolicyLoadError(
            "; ".join(problems) + f" (only module {IMPORT_MODULE!r} names from ABI.md)",
            policy=name,
        )


def policy_generator(seed: int, slot: int) -> np.random.Generator:
    """The generator behind ``random_fill`` for policy ``slot`` of an edge seeded ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, slot])))


def _charge(caller: wasmtime.Caller, cost: int) -> None:
    # Store's fuel methods only need a context, which a Caller provides.
    store = cast(wasmtime.Store, caller)
    fuel = wasmtime.Store.get_fuel(store)
    if fuel < cost:
        wasmtime.Store.set_fuel(store, 0)
        raise PolicyFuelExhausted(f"out of fuel in a host import (cost {cost}, had {fuel})")
    wasmtime.Store.set_fuel(store, fuel - cost)


def _guest_bytes(caller: wasmtime.Caller, ptr: int, length: int) -> NDArray[np.uint8] | None:
    """Writable view of ``length`` bytes at ``ptr`` in the caller's memory (None: out of bounds)."""
    memory = caller.get("memory")
    if not isinstance(memory, wasmtime.Memory):
        return None
    ptr &= _MASK32
    length &= _MASK32
    size = memory.data_len(caller)
    if ptr + length > size:
        return None
    if length == 0:
        return np.zeros(0, np.uint8)
    buffer: Any = memory.get_buffer_ptr(caller, size)
    whole: NDArray[np.uint8] = np.frombuffer(buffer, dtype=np.uint8)
    return whole[ptr : ptr + length]


def _guest_text(caller: wasmtime.Caller, ptr: int, length: int, limit: int) -> str | None:
    """UTF-8 text of 1..``limit`` bytes at ``ptr``, None if out of bounds, too long or invalid."""
    if not 0 < (length & _MASK32) <= limit:
        return None
    raw = _guest_bytes(caller, ptr, length)
    if raw is None:
        return None
    try:
        return raw.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        return None


class HostContext:
    """What one policy instance's imports act on."""

    def __init__(
        self,
        *,
        policy: str,
        swarm: SwarmState,
        models: ModelRegistry | None = None,
        seed: int = 0,
        slot: int = 0,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.policy = policy
        """Name used in logs and errors."""
        self.descriptor: Descriptor | None = None
        """Set once the descriptor is read; before that no key or model is declared."""
        self.swarm = swarm
        self.models = models
        self.rng = policy_generator(seed, slot)
        self._clock = clock
        self._loaded_at = clock()
        self._log_tokens = float(LOG_BURST)
        self._log_refilled_at = self._loaded_at
        self.logs_dropped = 0
        """Messages dropped by the rate limit or for a bad pointer."""

    # -- instantiation -----------------------------------------------------------

    def imports_for(self, store: wasmtime.Store, module: wasmtime.Module) -> list[wasmtime.Func]:
        """Host functions for ``module``'s imports, in order (call :func:`check_imports` first)."""
        funcs: list[wasmtime.Func] = []
        for imp in module.imports:
            entry = HOST_IMPORTS[imp.name or ""]
            funcs.append(
                wasmtime.Func(store, entry.func_type(), self._bind(entry), access_caller=True)
            )
        return funcs

    def _bind(self, entry: HostImport) -> Callable[..., Any]:
        method: Callable[..., Any] = getattr(self, entry.method)
        cost = entry.fuel

        def host_function(caller: wasmtime.Caller, *args: int) -> Any:
            try:
                _charge(caller, cost)
                return method(caller, *args)
            except PolicyError as exc:
                if not exc.policy:
                    raise type(exc)(exc.detail, policy=self.policy) from exc
                raise
            except Exception as exc:  # a host bug must not escape as anything but a fault
                raise PolicyTrap(
                    f"host import {IMPORT_MODULE}.{entry.method} failed: {exc!r}",
                    policy=self.policy,
                ) from exc

        return host_function

    # -- the imports -------------------------------------------------------------

    def log(self, caller: wasmtime.Caller, level: int, ptr: int, length: int) -> None:
        raw = _guest_bytes(caller, ptr, length)
        if raw is None or not self._take_log_token():
            self.logs_dropped += 1
            return
        text = raw[:MAX_LOG_BYTES].tobytes().decode("utf-8", errors="replace")
        agent_logger.log(
            _LEVELS[min(max(level, 0), 3)],
            "%s: %s",
            self.policy,
            text,
            extra={"policy": self.policy},
        )

    def _take_log_token(self) -> bool:
        now = self._clock()
        elapsed = max(0, now - self._log_refilled_at) / 1e9
        self._log_tokens = min(float(LOG_BURST), self._log_tokens + elapsed * LOG_PER_SECOND)
        self._log_refilled_at = now
        if self._log_tokens < 1.0:
            return False
        self._log_tokens -= 1.0
        return True

    def time_ns(self, caller: wasmtime.Caller) -> int:
        return self._clock() - self._loaded_at

    def random_fill(self, caller: wasmtime.Caller, ptr: int, length: int) -> None:
        target = _guest_bytes(caller, ptr, length)
        if target is None:
            raise PolicyTrap(f"random_fill({ptr & _MASK32}, {length & _MASK32}) is out of bounds")
        _charge(caller, target.shape[0] // 16)
        target[:] = np.frombuffer(self.rng.bytes(target.shape[0]), np.uint8)

    def _declared(self, caller: wasmtime.Caller, kind: str, ptr: int, length: int) -> str | None:
        key = _guest_text(caller, ptr, length, 128)
        if key is None or self.descriptor is None:
            return None
        keys: frozenset[str] = getattr(self.descriptor, kind)
        return key if key in keys else None

    def counter_add(self, caller: wasmtime.Caller, key_ptr: int, key_len: int, delta: int) -> int:
        key = self._declared(caller, "counters", key_ptr, key_len)
        if key is None:
            return -1
        self.swarm.counter_add(key, delta)
        return 0

    def set_add(
        self, caller: wasmtime.Caller, key_ptr: int, key_len: int, item_ptr: int, item_len: int
    ) -> int:
        key = self._declared(caller, "sets", key_ptr, key_len)
        if key is None:
            return -1
        if (item_len & _MASK32) > MAX_SET_ITEM_BYTES:
            return -2
        raw = _guest_bytes(caller, item_ptr, item_len)
        if raw is None:
            return -2
        try:
            item = raw.tobytes().decode("utf-8")
        except UnicodeDecodeError:
            return -2
        self.swarm.set_add(key, item)
        return 0

    def flag_get(self, caller: wasmtime.Caller, key_ptr: int, key_len: int) -> int:
        key = self._declared(caller, "flags", key_ptr, key_len)
        if key is None:
            return -1
        return 1 if self.swarm.flag_get(key) else 0

    def model_dims(self, caller: wasmtime.Caller, id_ptr: int, id_len: int) -> int:
        model_id = self._declared(caller, "models", id_ptr, id_len)
        if model_id is None or self.models is None:
            return -1
        try:
            model = self.models.get(model_id)
        except ModelNotFound:
            return -1
        return (model.input_dim << 32) | model.output_dim

    def model_infer(
        self, caller: wasmtime.Caller, id_ptr: int, id_len: int, in_ptr: int, n: int, out_ptr: int
    ) -> int:
        model_id = self._declared(caller, "models", id_ptr, id_len)
        if model_id is None or self.models is None:
            return -1
        try:
            model = self.models.get(model_id)
        except ModelNotFound:
            return -1
        if n < 0:
            return -2
        if n == 0:
            return 0
        in_bytes = _guest_bytes(caller, in_ptr, n * model.input_dim * 4)
        out_bytes = _guest_bytes(caller, out_ptr, n * model.output_dim * 4)
        if in_bytes is None or out_bytes is None:
            return -2
        _charge(caller, n * (model.input_dim + model.output_dim))
        rows = in_bytes.view(np.float32).reshape(n, model.input_dim)
        try:
            result = model.predict(rows)
        except ModelInputError:
            return -2
        except ModelError:
            return -1
        if result.shape != (n, model.output_dim):
            return -2
        out_bytes.view(np.float32).reshape(n, model.output_dim)[...] = result
        return 0
