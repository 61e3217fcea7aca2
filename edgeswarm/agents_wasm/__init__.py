"""Agent policy modules shipped with edgeswarm, as WebAssembly (agent ABI v1).

Sources live in ``src/<name>.c`` (C, using ``include/edgeswarm.h``) or
``src/<name>.wat``; built binaries in ``build/<name>.wasm`` (see ``build.py``).
The ABI they implement is described in ``ABI.md``.

Two kinds of module ship here:

- **examples** (:func:`example_names`): working policies (``boids``, ``flocking``,
  ``mlp_controller``, ``anomaly``);
- **hostile fixtures** (:func:`hostile_names`, names starting with ``hostile_``):
  modules that misbehave on purpose (infinite loop, memory bomb, trap, wrong ABI
  version, forbidden import) to test the host's sandbox. Never deploy them.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "HOSTILE_PREFIX",
    "example_names",
    "hostile_names",
    "is_hostile",
    "module_names",
    "module_path",
    "names",
]

_PACKAGE_DIR = Path(__file__).resolve().parent
_SOURCE_SUFFIXES = (".c", ".wat")

HOSTILE_PREFIX = "hostile_"
"""Name prefix of the hostile test fixtures."""


def module_names() -> list[str]:
    """Names of all shipped modules (examples and hostile fixtures), sorted."""
    return sorted(
        {path.stem for path in (_PACKAGE_DIR / "src").iterdir() if path.suffix in _SOURCE_SUFFIXES}
    )


def names() -> list[str]:
    """Same as :func:`module_names`."""
    return module_names()


def is_hostile(name: str) -> bool:
    """Whether ``name`` is a hostile test fixture rather than a working policy."""
    return name.startswith(HOSTILE_PREFIX)


def example_names() -> list[str]:
    """The working example policies, sorted."""
    return [name for name in module_names() if not is_hostile(name)]


def hostile_names() -> list[str]:
    """The hostile test fixtures, sorted."""
    return [name for name in module_names() if is_hostile(name)]


def module_path(name: str) -> Path:
    """Path of the built module ``build/<name>.wasm``."""
    if name not in module_names():
        raise KeyError(f"no agent module named {name!r}; known: {module_names()}")
    return _PACKAGE_DIR / "build" / f"{name}.wasm"
