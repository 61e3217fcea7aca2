"""Build every agent module: ``src/<name>.c`` / ``src/<name>.wat`` -> ``build/<name>.wasm``.

Run as ``python -m edgeswarm.agents_wasm.build [--check]`` (or ``scripts/build-agents``).

- ``.wat`` sources are assembled with :func:`wasmtime.wat2wasm`.
- ``.c`` sources are compiled with ``zig cc`` from the ``ziglang`` Python package
  (pinned to :data:`ZIGLANG_VERSION`: the bytes depend on the compiler version) with
  the fixed flags :data:`C_FLAGS`, no libc, no debug info, stripped, run from inside
  the source directory with relative paths and a private Zig cache, so the output
  depends only on the source text and the compiler.

Building writes the outputs that changed (after checking that a second build gives
the same bytes) and removes ``build/*.wasm`` files that have no source. ``--check``
writes nothing: it rebuilds into a temporary directory and exits 1, listing every
module whose committed ``build/<name>.wasm`` differs, is missing or has no source.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import wasmtime

from edgeswarm.errors import EdgeswarmError

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_DIR = PACKAGE_DIR / "src"
BUILD_DIR = PACKAGE_DIR / "build"
INCLUDE_DIR = PACKAGE_DIR / "include"

ZIGLANG_VERSION = "0.17.1"
"""The ``ziglang`` package the committed binaries were built with."""

C_FLAGS: tuple[str, ...] = (
    "--target=wasm32-freestanding",
    "-mcpu=mvp",  # MVP + exactly the features the ABI allows:
    "-msimd128",
    "-mbulk-memory",
    "-std=c11",
    "-O2",
    "-ffp-contract=off",  # no FMA contraction: float results match numpy
    "-fno-fast-math",
    "-nostdlib",
    "-g0",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--no-entry",
    "-Wl,--strip-all",  # no name, debug or producers sections
    "-Wl,-z,stack-size=65536",
)
"""Flags for every C module (the include directory and file names are added per build)."""

SOURCE_SUFFIXES = (".c", ".wat")


class BuildError(EdgeswarmError, RuntimeError):
    """A module failed to build, or the toolchain is missing."""


def ziglang_problem() -> str | None:
    """Why C modules cannot be built reproducibly here, or ``None`` when they can."""
    if importlib.util.find_spec("ziglang") is None:
        return (
            "C agent modules need the ziglang package: "
            f"pip install ziglang=={ZIGLANG_VERSION} (a build/test dependency)"
        )
    installed = importlib.metadata.version("ziglang")
    if installed != ZIGLANG_VERSION:
        return (
            f"ziglang {installed} is installed but the committed modules were built with "
            f"{ZIGLANG_VERSION}: pip install ziglang=={ZIGLANG_VERSION}"
        )
    return None


def sources(source_dir: Path | None = None) -> list[Path]:
    """Every ``*.c`` and ``*.wat`` in ``source_dir`` (default ``src/``), sorted by name."""
    source_dir = source_dir if source_dir is not None else SOURCE_DIR
    found = sorted(
        (path for path in source_dir.iterdir() if path.suffix in SOURCE_SUFFIXES),
        key=lambda path: (path.stem, path.suffix),
    )
    stems = [path.stem for path in found]
    duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
    if duplicates:
        raise BuildError(f"more than one source for module(s) {duplicates}")
    return found


def compile_wat(source: Path) -> bytes:
    """The Wasm binary for one ``.wat`` source file."""
    return bytes(wasmtime.wat2wasm(source.read_text(encoding="utf-8")))


def compile_c(source: Path, cache_dir: Path | None = None) -> bytes:
    """The Wasm binary for one ``.c`` source file (``zig cc``, :data:`C_FLAGS`)."""
    if importlib.util.find_spec("ziglang") is None:
        problem = ziglang_problem()
        raise BuildError(f"cannot build {source.name}: {problem}")
    source = source.resolve()
    include = os.path.relpath(INCLUDE_DIR, source.parent)
    with tempfile.TemporaryDirectory(prefix="es-agents-") as tmp:
        work = Path(tmp)
        cache = cache_dir if cache_dir is not None else work / "zig-cache"
        env = dict(os.environ)
        env["ZIG_GLOBAL_CACHE_DIR"] = str(cache / "global")
        env["ZIG_LOCAL_CACHE_DIR"] = str(cache / "local")
        output = work / f"{source.stem}.wasm"
        command = [
            sys.executable,
            "-m",
            "ziglang",
            "cc",
            *C_FLAGS,
            f"-I{include}",
            "-o",
            str(output),
            source.name,
        ]
        result = subprocess.run(
            command, cwd=source.parent, env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise BuildError(
                f"zig cc failed for {source.name} (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return output.read_bytes()


def compile_source(source: Path, cache_dir: Path | None = None) -> bytes:
    """The Wasm binary for one source file (``.c`` or ``.wat``)."""
    if source.suffix == ".wat":
        return compile_wat(source)
    if source.suffix == ".c":
        return compile_c(source, cache_dir)
    raise BuildError(f"unknown source type: {source.name}")


def build_all(source_dir: Path | None = None, build_dir: Path | None = None) -> dict[Path, bytes]:
    """Compile every source in ``source_dir`` (default ``src/``), in sorted order.

    Returns output path (in ``build_dir``, default ``build/``) -> bytes; writes nothing.
    """
    build_dir = build_dir if build_dir is not None else BUILD_DIR
    found = sources(source_dir)
    with tempfile.TemporaryDirectory(prefix="es-zig-cache-") as cache:
        return {
            build_dir / f"{source.stem}.wasm": compile_source(source, Path(cache))
            for source in found
        }


def _orphans(outputs: dict[Path, bytes], build_dir: Path) -> list[Path]:
    if not build_dir.is_dir():
        return []
    return sorted(path for path in build_dir.glob("*.wasm") if path not in outputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgeswarm.agents_wasm.build", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; rebuild in a temporary directory and exit 1 if any "
        "committed build/*.wasm differs, is missing or has no source",
    )
    args = parser.parse_args(argv)
    try:
        outputs = build_all(build_dir=BUILD_DIR)
        if not args.check and build_all(build_dir=BUILD_DIR) != outputs:
            print("error: two builds gave different bytes (not reproducible)", file=sys.stderr)
            return 1
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    bad: list[str] = []
    for path, wasm in outputs.items():
        current = path.read_bytes() if path.exists() else None
        if current == wasm:
            print(f"up to date {path.name} ({len(wasm)} bytes)")
        elif args.check:
            label = "stale" if current is not None else "missing"
            bad.append(f"{label:<10} {path.name}")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(wasm)
            print(f"built      {path.name} ({len(wasm)} bytes)")
    for orphan in _orphans(outputs, BUILD_DIR):
        if args.check:
            bad.append(f"orphan     {orphan.name} (no source)")
        else:
            orphan.unlink()
            print(f"removed    {orphan.name} (no source)")
    for line in bad:
        print(line, file=sys.stderr)
    if bad:
        print("run scripts/build-agents to rebuild", file=sys.stderr)
        problem = ziglang_problem()
        if problem is not None:
            print(f"note: {problem}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
