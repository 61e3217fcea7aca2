"""The exports of agent ABI v1 (``ABI.md``) as data, shared by the edge's host and the registry.

The edge checks a module against these before it instantiates it; the
gateway's registry checks a published blob against them before it stores it.
"""

from __future__ import annotations

from typing import Final

ABI_VERSION: Final = 1
"""The ABI version this host speaks (``es_abi_version()`` must return it)."""

REQUIRED_FUNCS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "es_abi_version": ((), ("i32",)),
    "es_describe": ((), ("i64",)),
    "es_alloc": (("i32",), ("i32",)),
    "es_init": (("i32", "i32"), ("i32",)),
    "es_step": (("i32", "i32", "i32", "i32"), ("i32",)),
}
"""Function exports of ABI v1: name -> (param types, result types)."""

OPTIONAL_FUNCS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "es_migrate": (("i32", "i32", "i32", "i32"), ("i32",)),
}
"""Function exports a module may leave out, with the type they must have when present:
``es_migrate(n, old_state_dim, old_ptr, new_ptr) -> status`` converts agent state from
another version's layout (ABI.md, "Hot swap and state layout")."""

MIGRATE_FUNC: Final = "es_migrate"
"""The optional export that migrates state across a changed layout."""
