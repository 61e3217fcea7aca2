"""Calling an ABI export without re-checking its type on every call.

``wasmtime.Func.__call__`` looks up the function's type and converts and checks
each argument against it on every call: about 35 µs per call on the 2-core
bench machine, as much as the ``flocking`` step itself computes for 10 000
agents. The ABI exports' types are checked once, at load
(:func:`~edgeswarm.edge.policy.abi.check_exports`), so :func:`export_caller`
calls them through wasmtime's unchecked C entry point
(``wasmtime_func_call_unchecked``) with one preallocated array of raw values:
about 3 µs. Traps and errors surface exactly as from ``Func.__call__`` (the
same ``enter_wasm`` context turns them into ``wasmtime.Trap`` /
``wasmtime.WasmtimeError``, and re-raises an exception a host function raised).

This reaches into wasmtime-py internals (``wasmtime._bindings``,
``wasmtime._func.enter_wasm``, ``Func._func``); when a wasmtime-py release lacks
them, :func:`export_caller` falls back to the checked call, so only speed
changes (:data:`FAST_CALLS` says which one is in use; the tests assert the fast
one with the pinned version).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any, Final

import wasmtime

try:
    from wasmtime import _bindings as _ffi
    from wasmtime._error import WasmtimeError as _WasmtimeError
    from wasmtime._func import enter_wasm as _enter_wasm

    _unchecked = _ffi.wasmtime_func_call_unchecked
    _Raw = _ffi.wasmtime_val_raw
    FAST_CALLS: Final = True
except (ImportError, AttributeError):  # another wasmtime-py: the checked call
    FAST_CALLS = False  # type: ignore[misc]


ExportCall = Callable[..., int]
"""``call(*i32_args) -> int``: one export of one instance, bound to its store."""


def export_caller(
    store: wasmtime.Store, func: wasmtime.Func, params: Sequence[str], result: str
) -> ExportCall:
    """A fast call of ``func``, whose type MUST be ``(params) -> (result)`` (checked at load).

    ``params`` are all ``"i32"``; ``result`` is ``"i32"`` or ``"i64"``.
    """
    if any(p != "i32" for p in params) or result not in ("i32", "i64"):
        raise ValueError(f"no fast call for ({', '.join(params)}) -> {result}")
    raw_func = getattr(func, "_func", None)
    if not FAST_CALLS or raw_func is None:
        return _checked(store, func)
    slots = (_Raw * max(len(params), 1))()
    count = len(slots)
    func_ref = ctypes.byref(raw_func)
    wide = result == "i64"

    def call(*args: int) -> int:
        for index, value in enumerate(args):
            slots[index].i32 = value
        with _enter_wasm(store) as trap:
            error = _unchecked(store._context(), func_ref, slots, count, trap)
            if error:
                raise _WasmtimeError._from_ptr(error)
        return int(slots[0].i64 if wide else slots[0].i32)

    return call


def _checked(store: wasmtime.Store, func: wasmtime.Func) -> ExportCall:
    def call(*args: int) -> int:
        result: Any = func(store, *args)
        return int(result)

    return call
