"""The promises of the package layout (``docs/architecture.md``), checked on the source.

Rooms are imported in one direction only (lower rooms never import higher
ones; ``gateway`` and ``edge`` never import each other; a wing imports from
its parent room only what is listed), there is no import cycle (imports under
``TYPE_CHECKING`` and inside functions count too), no module grows past
``MAX_LINES``, and no two modules define a public type of the same name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import edgeswarm

PACKAGE = Path(edgeswarm.__file__).parent

ROOMS: dict[str, int] = {
    "edgeswarm": 0,
    "edgeswarm.errors": 0,
    "edgeswarm.resource": 0,
    "edgeswarm.heap": 0,
    "edgeswarm.cpus": 0,
    "edgeswarm.telemetry": 1,
    "edgeswarm.agents_wasm": 1,
    "edgeswarm.wire": 2,
    "edgeswarm.identity": 2,
    "edgeswarm.storage": 2,
    "edgeswarm.state": 3,
    "edgeswarm.transport": 3,
    "edgeswarm.models": 3,
    "edgeswarm.placement": 3,
    "edgeswarm.client": 4,
    "edgeswarm.registry": 4,
    "edgeswarm.inference": 5,
    "edgeswarm.edge": 6,
    "edgeswarm.gateway": 6,
    "edgeswarm.cli": 7,
    "edgeswarm.bench": 7,
    "edgeswarm.chaos": 7,
    "edgeswarm.__main__": 8,
}
"""Room -> rank, as docs/architecture.md orders them: a module may import its own
room and rooms of a lower rank, nothing else."""

WINGS: dict[str, frozenset[str]] = {
    "edgeswarm.edge.policy": frozenset({"edgeswarm.edge.agent_table"}),
    "edgeswarm.gateway.log": frozenset(),
}
"""Wing -> the modules of its parent room it may import (the parent imports the wing)."""

MAX_LINES = 500
LARGER: dict[str, str] = {}
"""Modules allowed past MAX_LINES, with the reason (none today)."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every edgeswarm module ``name`` imports, wherever the import statement stands."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {
        target
        for target in targets
        if target in MODULES and target != name and not name.startswith(target + ".")
    }


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _room(module: str) -> str:
    return max((room for room in ROOMS if module == room or module.startswith(room + ".")), key=len)


def test_every_module_has_a_room() -> None:
    homeless = [
        name
        for name in MODULES
        if not any(
            name == room or name.startswith(room + ".") for room in ROOMS if room != "edgeswarm"
        )
        and name != "edgeswarm"
    ]
    assert homeless == [], "give each new package a rank in ROOMS and in docs/architecture.md"


def test_lower_rooms_never_import_higher_ones() -> None:
    upward = sorted(
        (name, target)
        for name, targets in GRAPH.items()
        for target in targets
        if _room(target) != _room(name) and ROOMS[_room(target)] >= ROOMS[_room(name)]
    )
    assert upward == []


def test_gateway_and_edge_never_import_each_other() -> None:
    crossing = sorted(
        (name, target)
        for name, targets in GRAPH.items()
        for target in targets
        if {_room(name), _room(target)} == {"edgeswarm.gateway", "edgeswarm.edge"}
    )
    assert crossing == []


def test_wings_import_only_what_they_are_allowed_from_their_room() -> None:
    trespass = sorted(
        (name, target)
        for wing, allowed in WINGS.items()
        for name, targets in GRAPH.items()
        if name == wing or name.startswith(wing + ".")
        for target in targets
        if _room(target) == _room(wing)
        and not (target == wing or target.startswith(wing + "."))
        and target not in allowed
    )
    assert trespass == []


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert cycles == []


def test_modules_stay_small() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    big = {name: n for name, n in sizes.items() if n > MAX_LINES and name not in LARGER}
    assert big == {}, f"split these by responsibility (or say why in LARGER): {big}"


# --- names ---------------------------------------------------------------------------


def _public_types(path: Path) -> set[str]:
    """Classes and type aliases (CapWords names) a module defines at its top level."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                name = getattr(target, "id", "")
                if re.fullmatch(r"[A-Z][a-z]+[A-Za-z]*", name):
                    names.add(name)
    return names


def test_no_two_modules_define_a_type_of_the_same_name() -> None:
    where: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        if _room(name) in ("edgeswarm.bench", "edgeswarm.cli"):
            continue
        for type_name in _public_types(path):
            where.setdefault(type_name, []).append(name)
    assert {n: m for n, m in where.items() if len(m) > 1} == {}
