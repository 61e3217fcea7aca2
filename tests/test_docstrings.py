"""Docstrings that state protocol facts agree with the code that defines them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import edgeswarm.wire
from edgeswarm.wire import PROTOCOL_VERSION, Session, SessionState
from edgeswarm.wire.states import TRANSITIONS, Side

_TRANSITION = re.compile(r"``([A-Z_]+)`` -> ``([A-Z_]+)``")


def test_session_methods_describe_transitions_the_state_table_has() -> None:
    described = []
    for name, method in inspect.getmembers(Session, inspect.isfunction):
        for before, after in _TRANSITION.findall(inspect.getdoc(method) or ""):
            described.append((name, SessionState[before], SessionState[after]))
    assert len(described) >= 4  # hello, challenge, authenticate, accept
    moves = {(side, state, new) for (side, state, _, _), new in TRANSITIONS.items()}
    for name, before, after in described:
        side = Side.CLIENT if name in ("hello", "authenticate") else Side.SERVER
        assert (side, before, after) in moves, f"Session.{name}: {before.name} -> {after.name}"


def test_wire_docstrings_name_the_protocol_version_spoken() -> None:
    package = Path(edgeswarm.wire.__file__).parent
    for path in sorted(package.glob("*.py")):
        for version in re.findall(r"protocol v(\d+)", path.read_text(), flags=re.IGNORECASE):
            assert int(version) == PROTOCOL_VERSION, f"{path.name} says protocol v{version}"
