"""The sandbox every policy call runs in: store limits, fuel, deadline, and typed faults.

A policy's store (:func:`limited_store`) caps its linear memory
(``memory.grow`` past the cap returns -1), its table elements, and allows
one instance, one table and one memory. :func:`guarded_call` runs one export
under a fuel budget and, on an engine with epoch interruption, an epoch
deadline (:mod:`~edgeswarm.edge.policy.deadline`), and turns every way it can
fail into an :mod:`edgeswarm.edge.policy.errors` error:

====================================  =========================================
wasmtime says                         the host raises
====================================  =========================================
trap, out of fuel                     :class:`PolicyFuelExhausted` (``fuel``)
trap, interrupt (epoch deadline)      :class:`PolicyDeadlineExceeded` (``deadline``)
trap, memory within 1/16 of its cap   :class:`PolicyMemoryExceeded` (``memory``)
any other trap or wasmtime error      :class:`PolicyTrap` (``trap``)
a :class:`PolicyError` from an import  re-raised as is
a result that is not an integer       :class:`PolicyAbiError` (``abi``)
====================================  =========================================

wasmtime does not say that a trap followed a refused ``memory.grow``; a trap
with memory near its cap is the observable sign, hence the 1/16 margin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import wasmtime

from edgeswarm.edge.policy.errors import (
    PolicyAbiError,
    PolicyDeadlineExceeded,
    PolicyError,
    PolicyFuelExhausted,
    PolicyMemoryExceeded,
    PolicyTrap,
)

DEFAULT_MEMORY_LIMIT: Final = 64 * 1024 * 1024
"""Linear memory one instance may have, in bytes."""

TABLE_ELEMENTS_LIMIT: Final = 10_000
"""Elements all of an instance's tables may hold together."""

WASM_PAGE: Final = 65_536

DEFAULT_FUEL_PER_AGENT: Final = 2_000
"""Fuel per agent per ``es_step`` unless configured otherwise."""

DEFAULT_HOST_CALLS_PER_AGENT: Final = 1
"""Host calls per agent per ``es_step`` unless configured otherwise."""

DEFAULT_DEADLINE_S: Final = 1.0
"""Wall-clock limit of one call of a :class:`~edgeswarm.edge.policy.wasm_host.WasmPolicy`
made without one; the edge derives a tighter one from its tick period."""

NO_EPOCH_DEADLINE: Final = 1 << 40
"""Epoch ticks given to a call without a deadline on an engine that counts epochs."""


@dataclass(frozen=True)
class FuelBudget:
    """Fuel given to each call: ``base + per_agent * n`` for ``es_step`` over n agents."""

    base: int = 2_000_000
    """Fuel for every call, whatever the agent count (covers setup, small calls and a
    few host calls per step, which cost 10^4-10^5 fuel each: ABI.md, "Fuel")."""
    per_agent: int = DEFAULT_FUEL_PER_AGENT
    """Additional fuel per agent for ``es_step``."""

    def for_agents(self, n: int) -> int:
        return self.base + self.per_agent * n


@dataclass(frozen=True)
class HostCallCap:
    """Host calls one call may make: ``base + per_agent * n`` for ``es_step`` over n agents."""

    base: int = 64
    """Host calls for every call, whatever the agent count."""
    per_agent: int = DEFAULT_HOST_CALLS_PER_AGENT
    """Additional host calls per agent for ``es_step``."""

    def for_agents(self, n: int) -> int:
        return self.base + self.per_agent * n


def limited_store(engine: wasmtime.Engine, memory_limit: int) -> wasmtime.Store:
    """A fresh store for one policy instance, with the sandbox's limits."""
    store = wasmtime.Store(engine)
    store.set_limits(
        memory_size=memory_limit,
        table_elements=TABLE_ELEMENTS_LIMIT,
        instances=1,
        tables=1,
        memories=1,
    )
    return store


def memory_near_limit(size: int, memory_limit: int) -> bool:
    """Whether ``size`` bytes of memory is within 1/16 (at least a page) of the limit."""
    return size + max(WASM_PAGE, memory_limit // 16) > memory_limit


def guarded_call(
    store: wasmtime.Store,
    call: Callable[..., Any],
    fuel: int,
    *args: int,
    label: str,
    policy: str,
    memory_size: Callable[[], int],
    memory_limit: int,
    epoch_ticks: int | None = None,
    deadline_s: float | None = None,
) -> int:
    """``call(*args)`` (an export of the store's instance) under ``fuel``, every
    failure mapped as the table above says.

    ``label`` names the export in messages; ``memory_size`` reads the
    instance's memory size after a trap. ``epoch_ticks`` (required on an
    engine with epoch interruption) is the call's epoch deadline, which
    ``deadline_s`` describes in messages.
    """
    store.set_fuel(fuel)
    if epoch_ticks is not None:
        store.set_epoch_deadline(epoch_ticks)
    try:
        result = call(*args)
    except PolicyError:
        raise  # from a host import, already named
    except wasmtime.Trap as exc:
        if exc.trap_code == wasmtime.TrapCode.OUT_OF_FUEL:
            raise PolicyFuelExhausted(
                f"{label} ran out of fuel (budget {fuel})", policy=policy
            ) from exc
        if exc.trap_code == wasmtime.TrapCode.INTERRUPT:
            limit = f"{deadline_s * 1e3:g} ms" if deadline_s is not None else "its deadline"
            raise PolicyDeadlineExceeded(
                f"{label} ran past its deadline of {limit}", policy=policy
            ) from exc
        if memory_near_limit(memory_size(), memory_limit):
            raise PolicyMemoryExceeded(
                f"{label} trapped with memory at its limit ({memory_limit} bytes): {exc.message}",
                policy=policy,
            ) from exc
        raise PolicyTrap(f"{label} trapped: {exc.message}", policy=policy) from exc
    except wasmtime.WasmtimeError as exc:
        raise PolicyTrap(f"{label} failed: {exc}", policy=policy) from exc
    if not isinstance(result, int):
        raise PolicyAbiError(f"{label} returned {result!r}, not an integer", policy=policy)
    return result


def charge_fuel(caller: wasmtime.Caller, cost: int) -> None:
    """Take ``cost`` fuel from the guest calling a host import; none left: out of fuel."""
    # Store's fuel methods only need a context, which a Caller provides.
    store = cast(wasmtime.Store, caller)
    fuel = wasmtime.Store.get_fuel(store)
    if fuel < cost:
        wasmtime.Store.set_fuel(store, 0)
        raise PolicyFuelExhausted(f"out of fuel in a host import (cost {cost}, had {fuel})")
    wasmtime.Store.set_fuel(store, fuel - cost)
