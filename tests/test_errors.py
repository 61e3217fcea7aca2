"""One error tree: every error is an ``EdgeswarmError``, drawn where ``edgeswarm/errors.py``
draws it; the CLI catches the root; state errors carry ``wire.ErrorCode`` members."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

import edgeswarm
from edgeswarm.errors import EdgeswarmError
from edgeswarm.gateway.peers import PeerRegistry, PeerRegistryError
from edgeswarm.identity import KeyPair
from edgeswarm.state import (
    InvalidKey,
    MalformedStateVector,
    MalformedUpdate,
    StateError,
    StoreError,
    WriterReused,
)
from edgeswarm.transport.tls import create_certificates
from edgeswarm.wire import PROTOCOL_VERSION, ErrorCode, Hello, Role

from .conftest import edgeswarm_command

_TREE_LINE = re.compile(r"^    ((?:[│ ]   |[├└]── )*)([A-Z][A-Za-z]+)\b")


def _drawn_tree() -> dict[str, str | None]:
    """Error name -> its parent's name, as the docstring of edgeswarm.errors draws it."""
    doc = inspect.getdoc(importlib.import_module("edgeswarm.errors")) or ""
    parents: dict[str, str | None] = {}
    path: list[str] = []
    for line in doc.splitlines():
        match = _TREE_LINE.match(line)
        if match is None:
            continue
        depth = len(match[1]) // 4
        path[depth:] = [match[2]]
        parents[match[2]] = path[depth - 1] if depth else None
    return parents


def _error_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(edgeswarm.__path__, "edgeswarm."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, BaseException):
                assert cls.__name__ not in found, f"two errors named {cls.__name__}"
                found[cls.__name__] = cls
    return found


def test_one_error_root_and_the_tree_drawn_is_the_tree_built() -> None:
    drawn = _drawn_tree()
    built = _error_classes()
    assert drawn.get("EdgeswarmError", "missing") is None
    assert set(drawn) == set(built)
    for name, cls in built.items():
        assert issubclass(cls, EdgeswarmError), name
        ours = [b for b in cls.__bases__ if b.__module__.startswith("edgeswarm")]
        parent = ours[0].__name__ if ours else None
        assert drawn[name] == parent, f"{name} is drawn under {drawn[name]}, built on {parent}"


def test_state_error_codes_are_wire_error_codes() -> None:
    assert MalformedUpdate.error_code is ErrorCode.MALFORMED_UPDATE
    assert MalformedStateVector.error_code is ErrorCode.MALFORMED_STATE_VECTOR
    for error in (StateError, InvalidKey, WriterReused, StoreError):
        assert isinstance(error.error_code, ErrorCode)
    assert (InvalidKey.error_code, WriterReused.error_code, StoreError.error_code) == (
        110,
        111,
        120,
    )


def test_a_registry_failure_at_enrollment_is_a_peer_registry_error(tmp_path: Path) -> None:
    path = tmp_path / "peers.db"
    key = KeyPair.generate()
    with PeerRegistry(path) as registry:
        hello = Hello(
            version=PROTOCOL_VERSION,
            role=Role.EDGE,
            peer_id="edge-1",
            public_key=key.public_key,
            join_token=registry.issue_token(Role.EDGE),
        )
        decision = registry.check(hello)
        assert decision.allowed
        other = sqlite3.connect(path)
        other.execute("DROP TABLE tokens")  # the file changed under the gateway
        other.commit()
        other.close()
        with pytest.raises(PeerRegistryError, match="no such table"):
            registry.admit(hello, decision)


def test_the_cli_reports_an_edgeswarm_error_in_one_line_with_status_1(tmp_path: Path) -> None:
    ca = create_certificates(tmp_path / "tls").ca
    snapshot = tmp_path / "edge" / "state" / "snapshot.bin"
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes(b"not a snapshot")  # the swarm state cannot be loaded: StoreError
    process = subprocess.run(
        edgeswarm_command(
            "edge",
            "--edge-id",
            "edge-1",
            "--ca",
            str(ca),
            "--gateway",
            "127.0.0.1:9",
            "--data-dir",
            str(tmp_path / "edge"),
            "--metrics-port",
            "-1",
            "--ticks",
            "1",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 1, process.stderr[-2000:]  # a runtime failure (exits.py)
    assert "Traceback" not in process.stderr
    [line] = [text for text in process.stderr.splitlines() if text.startswith("error:")]
    assert line.startswith(f"error: edge edge-1: snapshot {snapshot} is corrupt")
