"""Agent policy modules shipped with edgeswarm, as WebAssembly.

Sources live in ``src/<name>.wat``, built binaries in ``build/<name>.wasm``
(see ``build.py``); the ABI they implement is described in ``ABI.md``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["module_names", "module_path"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def module_names() -> list[str]:
    """Names of the shipped modules, sorted (``["boids"]``)."""
    return sorted(path.stem for path in (_PACKAGE_DIR / "src").glob("*.wat"))


def module_path(name: str) -> Path:
    """Path of the built module ``build/<name>.wasm``."""
    if name not in module_names():
        raise KeyError(f"no agent module named {name!r}; known: {module_names()}")
    return _PACKAGE_DIR / "build" / f"{name}.wasm"
