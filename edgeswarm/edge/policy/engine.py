"""The wasmtime configuration policies run under, and the compile worker that builds for it.

Every policy engine is configured here and nowhere else (:func:`engine_config`):

- fuel metering on (``consume_fuel``) and, unless a benchmark turns it off
  (:class:`EngineSettings`), epoch interruption (the wall-clock deadline of a call);
- Cranelift optimising for speed, with **NaN canonicalisation**: every float
  operation that produces a NaN produces the one canonical NaN, so float
  results are the same bits on x86-64 and on AArch64;
- exactly the WebAssembly features of ABI v1 (:data:`ALLOWED_FEATURES`) and
  nothing else. wasmtime validates a module against the features that are on;
  a module that needs one that is off is refused, and :func:`needed_features`
  names it by validating again with each refused feature on in turn
  (:data:`REFUSED_FEATURES`).

This file is also the **compile worker**: the edge never compiles an untrusted
module in its own process. :mod:`~edgeswarm.edge.policy.compiler` runs this
file *by path* (``python -I engine.py``: no ``edgeswarm`` package import, so
it starts in a few tens of milliseconds) with the module on stdin; the worker
limits its own address space and CPU time (``setrlimit``), compiles on one
thread, writes the serialized artifact to the file it was given, and prints
one JSON line: ``{"ok": true, "artifact_bytes": N}`` or ``{"ok": false,
"error": "...", "features": [...]}``. Running out of memory kills it
(allocation failure aborts), which the parent reports as a load fault.

Only the standard library and ``wasmtime`` may be imported here.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import wasmtime

ALLOWED_FEATURES: Final[dict[str, str]] = {
    "wasm_simd": "SIMD128 (fixed-width 128-bit vectors)",
    "wasm_bulk_memory": "bulk memory operations",
    "wasm_multi_value": "multi-value",
    "wasm_reference_types": "reference types",
}
"""wasmtime switches that are on: with the parts wasmtime always accepts (the
MVP, mutable globals, sign extension, non-trapping float-to-int, extended
constant expressions) this is WebAssembly 2.0, what ABI.md allows."""

REFUSED_FEATURES: Final[dict[str, tuple[str, ...]]] = {
    "relaxed SIMD": ("wasm_relaxed_simd",),
    "threads (shared memory, atomics)": ("wasm_threads",),
    "memory64": ("wasm_memory64",),
    "multiple memories": ("wasm_multi_memory",),
    "tail calls": ("wasm_tail_call",),
    "exception handling": ("wasm_exceptions",),
    "typed function references": ("wasm_function_references",),
    "garbage collection (GC)": ("wasm_gc", "wasm_function_references"),
    "custom page sizes": ("wasm_custom_page_sizes",),
    "wide arithmetic": ("wasm_wide_arithmetic",),
    "stack switching": ("wasm_stack_switching", "wasm_function_references", "wasm_exceptions"),
}
"""Feature name (as errors say it) -> the wasmtime switches that enable it; all off."""

_OFF: Final = tuple(
    sorted({switch for switches in REFUSED_FEATURES.values() for switch in switches})
)


@dataclass(frozen=True)
class EngineSettings:
    """What may differ between policy engines (everything else is fixed above)."""

    epoch_interruption: bool = True
    """Compile epoch checks into the code so a call can be stopped at a deadline;
    off only to measure what the deadline costs (``scripts/bench edge``)."""

    def describe(self) -> str:
        """Stable text naming the whole configuration (for cache fingerprints)."""
        features = ",".join(sorted(ALLOWED_FEATURES))
        return (
            f"consume_fuel=1;epoch_interruption={int(self.epoch_interruption)};"
            f"cranelift_opt_level=speed;nan_canonicalization=1;features={features};"
            f"off={','.join(_OFF)}"
        )

    def to_json(self) -> str:
        return json.dumps({"epoch_interruption": self.epoch_interruption})

    @classmethod
    def from_json(cls, text: str) -> EngineSettings:
        raw = json.loads(text)
        return cls(epoch_interruption=bool(raw["epoch_interruption"]))


def engine_config(
    settings: EngineSettings, *, parallel: bool = True, extra: Iterable[str] = ()
) -> wasmtime.Config:
    """The policy engine's configuration; ``extra`` turns refused features on (probing only).

    ``parallel`` does not change the code produced (artifacts are interchangeable).
    """
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = settings.epoch_interruption
    config.cranelift_opt_level = "speed"
    config.cranelift_nan_canonicalization = True
    config.parallel_compilation = parallel
    config.wasm_component_model = False
    for switch in ALLOWED_FEATURES:
        setattr(config, switch, True)
    for switch in _OFF:
        setattr(config, switch, False)
    for feature in extra:
        for switch in REFUSED_FEATURES[feature]:
            setattr(config, switch, True)
    return config


def _validates(wasm: bytes, settings: EngineSettings, extra: Sequence[str]) -> bool:
    engine = wasmtime.Engine(engine_config(settings, parallel=False, extra=extra))
    try:
        wasmtime.Module.validate(engine, wasm)
    except wasmtime.WasmtimeError:
        return False
    return True


def needed_features(wasm: bytes, settings: EngineSettings) -> list[str]:
    """The refused features ``wasm`` needs (call it once validation failed).

    One feature that alone makes the module valid is named alone; otherwise,
    if all of them together make it valid, every feature without which it
    fails; ``[]`` when the module is invalid whatever is enabled.
    """
    for feature in REFUSED_FEATURES:
        if _validates(wasm, settings, (feature,)):
            return [feature]
    everything = tuple(REFUSED_FEATURES)
    if not _validates(wasm, settings, everything):
        return []
    return [
        feature
        for feature in everything
        if not _validates(wasm, settings, tuple(f for f in everything if f != feature))
    ]


def compile_artifact(
    wasm: bytes, settings: EngineSettings
) -> tuple[bytes | None, dict[str, object]]:
    """Validate and compile ``wasm`` here; ``(artifact, report)`` as the worker prints it."""
    engine = wasmtime.Engine(engine_config(settings, parallel=False))
    try:
        wasmtime.Module.validate(engine, wasm)
    except wasmtime.WasmtimeError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid module"
        features = needed_features(wasm, settings)
        return None, {"ok": False, "error": message, "features": features}
    try:
        module = wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as exc:
        return None, {"ok": False, "error": str(exc).strip(), "features": []}
    artifact = bytes(module.serialize())
    return artifact, {"ok": True, "artifact_bytes": len(artifact)}


def _limit_self(memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))


def worker_main(argv: list[str] | None = None) -> int:
    """Entry point of the compile worker (see the module docstring)."""
    parser = argparse.ArgumentParser(description="compile one policy module (internal)")
    parser.add_argument("--settings", required=True, help="EngineSettings as JSON")
    parser.add_argument("--memory-bytes", type=int, required=True)
    parser.add_argument("--cpu-seconds", type=int, required=True)
    parser.add_argument("--out", required=True, help="file to write the artifact to")
    args = parser.parse_args(argv)
    settings = EngineSettings.from_json(args.settings)
    _limit_self(args.memory_bytes, args.cpu_seconds)
    wasm = sys.stdin.buffer.read()
    artifact, report = compile_artifact(wasm, settings)
    if artifact is not None:
        with open(args.out, "wb") as out:
            out.write(artifact)
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
