"""Build a shipped C policy for the host CPU: the native ceiling Wasm is measured against.

``build_native("flocking")`` compiles ``src/flocking.c`` (the very source of
``build/flocking.wasm``) with the same pinned ``zig cc`` into a shared library for
this machine (``-O2 -mcpu=native``, no fast-math, no FMA contraction, no libc),
with ``native/`` first on the include path: its ``wasm_simd128.h`` spells the
SIMD128 intrinsics with clang's portable vector extensions, and
``include/edgeswarm.h`` drops the Wasm-only attributes on other targets. The
library exports ``es_step(n, obs, state, act)`` over host pointers, so it runs on
the agent table's numpy arrays directly (one ctypes call per step).

Libraries are built on demand into a cache directory (never committed), named by
a digest of the sources, the flags and the compiler version, so a stale one is
never used. Nothing here is used by the edge at run time.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

from edgeswarm.agents_wasm.build import (
    C_FLAGS,
    INCLUDE_DIR,
    PACKAGE_DIR,
    SOURCE_DIR,
    BuildError,
    ziglang_problem,
)

NATIVE_INCLUDE_DIR: Final = PACKAGE_DIR / "native"

_WASM_ONLY: Final = ("--target=", "-mcpu=", "-msimd128", "-mbulk-memory", "-Wl,")

NATIVE_FLAGS: Final = (
    "-mcpu=native",
    "-shared",
    "-fPIC",
    *(flag for flag in C_FLAGS if not flag.startswith(_WASM_ONLY)),
)
"""Flags of every native build: the Wasm build's (``-O2``, no fast-math, no FMA
contraction, no libc, warnings as errors) for this CPU, as a shared library."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edgeswarm/native`` (``~/.cache/edgeswarm/native`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgeswarm" / "native"


def _digest(source: Path) -> str:
    digest = hashlib.sha256()
    for path in (source, INCLUDE_DIR / "edgeswarm.h", NATIVE_INCLUDE_DIR / "wasm_simd128.h"):
        digest.update(path.read_bytes())
    digest.update("\0".join(NATIVE_FLAGS).encode())
    digest.update(importlib.metadata.version("ziglang").encode())
    return digest.hexdigest()[:16]


def build_native(name: str, cache_dir: Path | None = None) -> Path:
    """Path of the host shared library of ``src/<name>.c``, built if not cached yet.

    Raises :class:`~edgeswarm.agents_wasm.build.BuildError` when ziglang is
    missing or the build fails.
    """
    problem = ziglang_problem()
    if problem is not None:
        raise BuildError(problem)
    source = SOURCE_DIR / f"{name}.c"
    if not source.is_file():
        raise BuildError(f"no C source for {name!r} in {SOURCE_DIR}")
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    library = cache_dir / f"{name}-{_digest(source)}.so"
    if library.is_file():
        return library
    with tempfile.TemporaryDirectory(prefix="es-native-") as tmp:
        env = dict(os.environ)
        env["ZIG_GLOBAL_CACHE_DIR"] = str(cache_dir / "zig-global")
        env["ZIG_LOCAL_CACHE_DIR"] = str(Path(tmp) / "zig-local")
        output = cache_dir / f".tmp-{os.getpid()}-{library.name}"
        command = [
            sys.executable,
            "-m",
            "ziglang",
            "cc",
            *NATIVE_FLAGS,
            f"-I{NATIVE_INCLUDE_DIR}",
            f"-I{INCLUDE_DIR}",
            "-o",
            str(output),
            str(source),
        ]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuildError(
                f"zig cc (native) failed for {source.name} (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        try:
            os.replace(output, library)
        finally:
            output.unlink(missing_ok=True)
    return library


def load_step(library: Path) -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    """``es_step(n, obs, state, act) -> int32`` of a native library (pointers as integers)."""
    step = ctypes.CDLL(str(library)).es_step
    step.restype = ctypes.c_int32
    step.argtypes = [ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    return step
