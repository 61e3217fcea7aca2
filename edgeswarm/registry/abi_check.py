"""Does a blob speak agent ABI v1? A static look at its exports, nothing run.

The registry compiles the blob and compares its exports with
:data:`edgeswarm.agents_wasm.abi_v1.REQUIRED_FUNCS` (and the optional
:data:`~edgeswarm.agents_wasm.abi_v1.OPTIONAL_FUNCS`, ``es_migrate``, when the
blob exports one: it must have its type); it never instantiates it. How it
compiles is a seam (:data:`ModuleCompiler`): by default in this process
(bounded only by the blob's size, for library use and tests); ``edgeswarm
agents publish`` gives the edge's bounded compiler instead (a child process
under the edge's compile limits, issue 12), so that a compile bomb costs the
publisher's command nothing but a refusal. What only running the module tells
(``es_abi_version()``, the descriptor) was checked by ``edgeswarm agents
build`` and is checked again by every edge when it loads the module.
"""

from __future__ import annotations

from collections.abc import Callable

import wasmtime

from edgeswarm.agents_wasm.abi_v1 import ABI_VERSION, OPTIONAL_FUNCS, REQUIRED_FUNCS

from .errors import AbiMismatchError
from .manifest import Manifest

ModuleCompiler = Callable[[bytes, str], wasmtime.Module]
"""Compiles ``blob`` (named ``label`` in errors); raises :class:`AbiMismatchError` (or
another :class:`~.errors.ModuleRefusedError`) when it cannot or may not."""


def compile_here(blob: bytes, label: str) -> wasmtime.Module:
    """The default :data:`ModuleCompiler`: wasmtime in this process."""
    try:
        return wasmtime.Module(wasmtime.Engine(), blob)
    except wasmtime.WasmtimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid"
        raise AbiMismatchError(f"{label} is not a valid Wasm module: {first}") from exc


def _types(types: object) -> tuple[str, ...]:
    return tuple(str(t) for t in types)  # type: ignore[attr-defined]


def check_abi(
    manifest: Manifest, blob: bytes, compile_module: ModuleCompiler = compile_here
) -> None:
    """Raise :class:`AbiMismatchError` unless ``manifest`` and ``blob`` are ABI v1."""
    if manifest.abi_version != ABI_VERSION:
        raise AbiMismatchError(
            f"{manifest.ref} declares ABI {manifest.abi_version}; this registry takes "
            f"ABI {ABI_VERSION} modules"
        )
    module = compile_module(blob, manifest.ref)
    exports = {export.name: export.type for export in module.exports}
    problems = []
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        problems.append("no 'memory' export")
    for func, (params, results) in {**REQUIRED_FUNCS, **OPTIONAL_FUNCS}.items():
        ty = exports.get(func)
        if ty is None and func in OPTIONAL_FUNCS:
            continue
        if not isinstance(ty, wasmtime.FuncType):
            problems.append(f"no function export {func!r}")
        elif (_types(ty.params), _types(ty.results)) != (params, results):
            problems.append(f"{func!r} has the wrong signature")
    if problems:
        raise AbiMismatchError(f"{manifest.ref} is not an ABI v1 module: {'; '.join(problems)}")
