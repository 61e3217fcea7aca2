"""Build every agent module: ``src/<name>.wat`` -> ``build/<name>.wasm``.

Run as ``python -m edgeswarm.agents_wasm.build`` (or ``scripts/build-agents``).
The output depends only on the source text, so a rebuild gives identical
bytes; ``--check`` exits 1 when a committed ``build/*.wasm`` is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import wasmtime

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_DIR = PACKAGE_DIR / "src"
BUILD_DIR = PACKAGE_DIR / "build"


def compile_source(source: Path) -> bytes:
    """The Wasm binary for one ``.wat`` source file."""
    return bytes(wasmtime.wat2wasm(source.read_text(encoding="utf-8")))


def build_all(source_dir: Path | None = None, build_dir: Path | None = None) -> dict[Path, bytes]:
    """Compile every ``*.wat`` in ``source_dir`` (default ``src/``).

    Returns output path (in ``build_dir``, default ``build/``) -> bytes; writes nothing.
    """
    source_dir = source_dir if source_dir is not None else SOURCE_DIR
    build_dir = build_dir if build_dir is not None else BUILD_DIR
    return {
        build_dir / f"{source.stem}.wasm": compile_source(source)
        for source in sorted(source_dir.glob("*.wat"))
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeswarm.agents_wasm.build")
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if any output is stale"
    )
    args = parser.parse_args(argv)
    stale = 0
    for path, wasm in build_all().items():
        current = path.read_bytes() if path.exists() else None
        if current == wasm:
            print(f"up to date {path.name} ({len(wasm)} bytes)")
            continue
        if args.check:
            print(f"stale      {path.name}", file=sys.stderr)
            stale += 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wasm)
        print(f"built      {path.name} ({len(wasm)} bytes)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
