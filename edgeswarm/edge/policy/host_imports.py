"""The host functions a policy may import: one table, one context per policy.

:data:`HOST_IMPORTS` is the linker table, the only place a host function is
declared: import name (module ``"es"``) -> signature, fuel price, and the
:class:`HostContext` method implementing it. :func:`check_imports` refuses a
module importing anything else (or an ``"es"`` name with another signature),
naming the import and its type.

A :class:`HostContext` is the state one policy instance's imports see: its
seeded generator (PCG64 from ``(edge seed, policy slot)``), its load time,
its log rate limit, its descriptor (for the shared-state and model keys it
may touch), the shared :class:`~edgeswarm.edge.policy.swarm_state.SwarmState` and
the :class:`~edgeswarm.models.ModelRegistry`, and the budget of the guest call
in progress (:meth:`HostContext.begin_call`): how many more host calls it may
make and its wall-clock deadline.

Every host call, before it does anything else:

1. counts against the call's cap (past it:
   :class:`~edgeswarm.edge.policy.errors.PolicyHostCallLimit`);
2. checks the call's deadline (past it:
   :class:`~edgeswarm.edge.policy.errors.PolicyDeadlineExceeded`);
3. pays its fuel price from the guest's fuel (cannot:
   :class:`~edgeswarm.edge.policy.errors.PolicyFuelExhausted`). Prices are
   measured, not guessed: ``python -m edgeswarm.bench.host_imports`` times each
   import and the guest's own code, and a price is what the same time buys in
   guest instructions (ABI.md has the table), so fuel bounds a step's time
   whatever mix of guest code and host calls spends it.

Every host function reaches the guest's memory through the ``Caller`` and
bounds-checks each pointer/length against the memory's current size, in
Python integers (``ptr + len`` and ``n * dim * 4`` never wrap). A bad
pointer gives the error code ABI.md documents (``-1``/``-2``); the two
imports without a result behave like a guest memory access out of bounds:
``random_fill`` traps (:class:`~edgeswarm.edge.policy.errors.PolicyTrap`) and
``log`` drops the message. No Python exception other than a
:class:`~edgeswarm.edge.policy.errors.PolicyError` leaves a host function (it
comes out of the guest call that made the import).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import wasmtime
from numpy.typing import NDArray

from edgeswarm.edge.policy.abi import (
    MAX_KEY_BYTES,
    MAX_SET_ITEM_BYTES,
    Descriptor,
    describe_type,
    type_names,
)
from edgeswarm.edge.policy.errors import (
    PolicyDeadlineExceeded,
    PolicyError,
    PolicyHostCallLimit,
    PolicyLoadError,
    PolicyTrap,
)
from edgeswarm.edge.policy.heavy import (
    HEAVY_FUEL,
    HEAVY_FUEL_PER_VALUE,
    HeavyLaneSeam,
    heavy_request,
    heavy_results,
)
from edgeswarm.edge.policy.sandbox import charge_fuel
from edgeswarm.edge.policy.swarm_state import SwarmState, SwarmStateRefusedError
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
_NO_DEADLINE: Final = 1 << 62


@dataclass(frozen=True)
class HostImport:
    """One entry of the linker table."""

    params: tuple[str, ...]
    results: tuple[str, ...]
    fuel: int
    """Fuel charged per call, before anything else."""
    method: str
    """Name of the :class:`HostContext` method implementing it."""
    fuel_per_unit: int = 0
    """Fuel charged per unit of work once the arguments are checked (see ``unit``)."""
    unit: str = ""
    """What ``fuel_per_unit`` is per: ``byte`` (random_fill), ``value`` (model_infer:
    each f32 read or written)."""

    def func_type(self) -> wasmtime.FuncType:
        kinds = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64()}
        return wasmtime.FuncType([kinds[p] for p in self.params], [kinds[r] for r in self.results])


FUEL_PER_MICROSECOND: Final = 10_000
"""What a microsecond buys in the cheapest guest code (``guest_loop``: ~0.1 ns per fuel);
the prices below are each import's measured time at this rate."""

HOST_IMPORTS: Final[dict[str, HostImport]] = {
    "log": HostImport(("i32", "i32", "i32"), (), 280_000, "log"),
    "time_ns": HostImport((), ("i64",), 130_000, "time_ns"),
    "random_fill": HostImport(("i32", "i32"), (), 180_000, "random_fill", 6, "byte"),
    "counter_add": HostImport(("i32", "i32", "i64"), ("i32",), 230_000, "counter_add"),
    "set_add": HostImport(("i32", "i32", "i32", "i32"), ("i32",), 210_000, "set_add"),
    "flag_get": HostImport(("i32", "i32"), ("i32",), 190_000, "flag_get"),
    "model_infer": HostImport(
        ("i32", "i32", "i32", "i32", "i32"), ("i32",), 300_000, "model_infer", 14, "value"
    ),
    "model_dims": HostImport(("i32", "i32"), ("i64",), 180_000, "model_dims"),
    "heavy_request": HostImport(
        ("i32",) * 6, ("i32",), HEAVY_FUEL, "heavy_request", HEAVY_FUEL_PER_VALUE, "value"
    ),
    "heavy_results": HostImport(
        ("i32",) * 7, ("i32",), HEAVY_FUEL, "heavy_results", HEAVY_FUEL_PER_VALUE, "value"
    ),
}
"""Every host function, by import name in module ``"es"``. Prices: the median of three
runs of ``python -m edgeswarm.bench host_imports`` (2-core x86-64 VM, wasmtime 50),
times :data:`FUEL_PER_MICROSECOND`, rounded up to two digits (ABI.md, "Fuel")."""


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


def u32(value: int) -> int:
    """An i32 argument read as the unsigned offset or length it stands for."""
    return value & _MASK32


class HostContext:
    """What one policy instance's imports act on."""

    def __init__(
        self,
        *,
        policy: str,
        swarm: SwarmState,
        models: ModelRegistry | None = None,
        heavy: HeavyLaneSeam | None = None,
        seed: int = 0,
        slot: int = 0,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.policy = policy
        """Name used in logs and errors."""
        self.descriptor: Descriptor | None = None
        """Set once the descriptor is read; before that no key or model is declared."""
        self.memory: wasmtime.Memory | None = None
        """The instance's exported memory, once instantiated (looked up per call before)."""
        self.swarm = swarm
        self.models = models
        self.heavy = heavy
        """The edge's heavy lane behind ``heavy_request`` / ``heavy_results`` (None: -1)."""
        self.slot = slot
        """The policy's slot in its edge's set (the heavy lane answers by slot)."""
        self.step_agents = 0
        """``n`` of the ``es_step`` in progress (``heavy_request`` may mark no more)."""
        self.rng = policy_generator(seed, slot)
        self._clock = clock
        self._loaded_at = clock()
        self._log_tokens = float(LOG_BURST)
        self._log_refilled_at = self._loaded_at
        self.logs_dropped = 0
        """Messages dropped by the rate limit or for a bad pointer."""
        self._calls_left = 0
        self._call_cap = 0
        self._deadline_ns = _NO_DEADLINE
        self._deadline_s = 0.0

    # -- the guest call in progress ------------------------------------------------

    def begin_call(self, *, host_calls: int, deadline_s: float | None) -> None:
        """Budget of the guest call about to start: host calls allowed, wall-clock limit."""
        self._calls_left = self._call_cap = host_calls
        if deadline_s is None:
            self._deadline_ns = _NO_DEADLINE
        else:
            self._deadline_s = deadline_s
            self._deadline_ns = time.monotonic_ns() + int(deadline_s * 1e9)

    def _admit(self, caller: wasmtime.Caller, cost: int) -> None:
        """Count the call against the cap and the deadline, then charge its price."""
        self._calls_left -= 1
        if self._calls_left < 0:
            raise PolicyHostCallLimit(
                f"more than {self._call_cap} host calls in one call of the module"
            )
        if time.monotonic_ns() > self._deadline_ns:
            raise PolicyDeadlineExceeded(
                f"ran past its deadline of {self._deadline_s * 1e3:g} ms (in a host call)"
            )
        charge_fuel(caller, cost)

    # -- instantiation -------------------------------------------------------------

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
                self._admit(caller, cost)
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

    # -- guest memory ----------------------------------------------------------------

    def guest_bytes(
        self, caller: wasmtime.Caller, ptr: int, length: int
    ) -> NDArray[np.uint8] | None:
        """Writable view of ``length`` bytes at offset ``ptr`` (None: out of bounds).

        ``ptr`` is an i32 argument (read unsigned); ``length`` a non-negative
        Python integer, however large (an i32 length is passed through :func:`u32`).
        """
        memory = self.memory
        if memory is None:
            found = caller.get("memory")
            if not isinstance(found, wasmtime.Memory):
                return None
            memory = found
        start = u32(ptr)
        size = memory.data_len(caller)
        if length < 0 or start + length > size:
            return None
        if length == 0:
            return np.zeros(0, np.uint8)
        buffer: Any = memory.get_buffer_ptr(caller, size)
        whole: NDArray[np.uint8] = np.frombuffer(buffer, dtype=np.uint8)
        return whole[start : start + length]

    def _guest_text(self, caller: wasmtime.Caller, ptr: int, length: int) -> str | None:
        """UTF-8 text of 1..128 bytes at ``ptr``; None if out of bounds, too long or invalid."""
        if not 0 < u32(length) <= MAX_KEY_BYTES:
            return None
        raw = self.guest_bytes(caller, ptr, u32(length))
        if raw is None:
            return None
        try:
            return raw.tobytes().decode("utf-8")
        except UnicodeDecodeError:
            return None

    def declared(self, caller: wasmtime.Caller, kind: str, ptr: int, length: int) -> str | None:
        key = self._guest_text(caller, ptr, length)
        if key is None or self.descriptor is None:
            return None
        keys: frozenset[str] = getattr(self.descriptor, kind)
        return key if key in keys else None

    # -- the imports -----------------------------------------------------------------

    def log(self, caller: wasmtime.Caller, level: int, ptr: int, length: int) -> None:
        raw = self.guest_bytes(caller, ptr, u32(length))
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
        target = self.guest_bytes(caller, ptr, u32(length))
        if target is None:
            raise PolicyTrap(f"random_fill({u32(ptr)}, {u32(length)}) is out of bounds")
        charge_fuel(caller, target.shape[0] * HOST_IMPORTS["random_fill"].fuel_per_unit)
        target[:] = np.frombuffer(self.rng.bytes(target.shape[0]), np.uint8)

    def counter_add(self, caller: wasmtime.Caller, key_ptr: int, key_len: int, delta: int) -> int:
        key = self.declared(caller, "counters", key_ptr, key_len)
        if key is None:
            return -1
        try:
            self.swarm.counter_add(key, delta)
        except SwarmStateRefusedError:
            return -1
        return 0

    def set_add(
        self, caller: wasmtime.Caller, key_ptr: int, key_len: int, item_ptr: int, item_len: int
    ) -> int:
        key = self.declared(caller, "sets", key_ptr, key_len)
        if key is None:
            return -1
        if not 0 < u32(item_len) <= MAX_SET_ITEM_BYTES:
            return -2
        raw = self.guest_bytes(caller, item_ptr, u32(item_len))
        if raw is None:
            return -2
        try:
            item = raw.tobytes().decode("utf-8")
        except UnicodeDecodeError:
            return -2
        try:
            self.swarm.set_add(key, item)
        except SwarmStateRefusedError as exc:
            return -2 if exc.part == "item" else -1
        return 0

    def flag_get(self, caller: wasmtime.Caller, key_ptr: int, key_len: int) -> int:
        key = self.declared(caller, "flags", key_ptr, key_len)
        if key is None:
            return -1
        try:
            return 1 if self.swarm.flag_get(key) else 0
        except SwarmStateRefusedError:
            return -1

    def model_dims(self, caller: wasmtime.Caller, id_ptr: int, id_len: int) -> int:
        model_id = self.declared(caller, "models", id_ptr, id_len)
        if model_id is None or self.models is None:
            return -1
        try:
            model = self.models.get(model_id)
        except ModelNotFound:
            return -1
        return (model.input_dim << 32) | model.output_dim

    def heavy_request(
        self,
        caller: wasmtime.Caller,
        id_ptr: int,
        id_len: int,
        mask: int,
        inp: int,
        n: int,
        dim: int,
    ) -> int:
        return heavy_request(self, caller, id_ptr, id_len, mask, inp, n, dim)

    def heavy_results(self, caller: wasmtime.Caller, *args: int) -> int:
        return heavy_results(self, caller, *args)

    def model_infer(
        self, caller: wasmtime.Caller, id_ptr: int, id_len: int, in_ptr: int, n: int, out_ptr: int
    ) -> int:
        model_id = self.declared(caller, "models", id_ptr, id_len)
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
        # Python integers: n * dim * 4 is exact, never taken modulo 2**32.
        in_bytes = self.guest_bytes(caller, in_ptr, n * model.input_dim * 4)
        out_bytes = self.guest_bytes(caller, out_ptr, n * model.output_dim * 4)
        if in_bytes is None or out_bytes is None:
            return -2
        price = HOST_IMPORTS["model_infer"].fuel_per_unit
        charge_fuel(caller, n * (model.input_dim + model.output_dim) * price)
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
