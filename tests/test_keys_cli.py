"""``edgeswarm keys`` as an operator types it: no silent new registry, no key changing
hands, usage errors in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeswarm.gateway.peers import PeerRegistry, PeerRegistryError
from edgeswarm.identity import KeyPair, public_key_text
from edgeswarm.wire import Role

from .operator import cli, error_line


@pytest.fixture
def registry_dir(tmp_path: Path) -> Path:
    """A gateway data directory with a registry (as the gateway's first start leaves it)."""
    data_dir = tmp_path / "gw"
    with PeerRegistry(data_dir / "peers.db"):
        pass
    return data_dir


def test_adding_a_key_under_a_second_id_is_refused_and_the_first_keeps_it(
    registry_dir: Path,
) -> None:
    key = public_key_text(KeyPair.generate().public_key)
    first = cli(
        "keys", "add", "--data-dir", str(registry_dir), "--peer-id", "A", "--public-key", key
    )
    assert first.returncode == 0, first.stderr
    second = cli(
        *("keys", "add", "--data-dir", str(registry_dir), "--peer-id", "B"),
        *("--public-key", key, "--replace"),
    )
    assert second.returncode == 1
    assert "is enrolled as peer 'A'" in error_line(second)
    listed = cli("keys", "list", "--data-dir", str(registry_dir), "--json")
    assert [(p["peer_id"], p["public_key"]) for p in json.loads(listed.stdout)] == [("A", key)]


def test_the_registry_refuses_one_key_for_two_ids(tmp_path: Path) -> None:
    key = KeyPair.generate().public_key
    with PeerRegistry(tmp_path / "peers.db") as registry:
        registry.add_peer(key, "A", Role.EDGE)
        with pytest.raises(PeerRegistryError, match="enrolled as peer 'A'"):
            registry.add_peer(key, "B", Role.EDGE, replace=True)
        assert [p.peer_id for p in registry.peers()] == ["A"]
        registry.add_peer(key, "A", Role.ADMIN)  # the same id may change its role
        assert registry.peer_by_id("A") is not None


@pytest.mark.parametrize("command", [["issue"], ["list"], ["remove", "--peer-id", "x"]])
def test_a_mistyped_data_dir_is_a_usage_error_and_creates_nothing(
    tmp_path: Path, registry_dir: Path, command: list[str]
) -> None:
    typo = tmp_path / "gw-typo"
    result = cli("keys", *command, "--data-dir", str(typo))
    assert result.returncode == 2
    line = error_line(result)
    assert f"no peer registry {typo / 'peers.db'}" in line
    assert "--data-dir" in line
    assert not typo.exists()


def test_keys_list_without_a_data_dir_creates_no_var_gateway(tmp_path: Path) -> None:
    result = cli("keys", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert "var/gateway/peers.db" in error_line(result)
    assert list(tmp_path.iterdir()) == []


def test_create_makes_a_registry_before_the_gateways_first_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    issued = cli("keys", "issue", "--data-dir", str(data_dir), "--create", "--json")
    assert issued.returncode == 0, issued.stderr
    assert json.loads(issued.stdout)["token"].startswith("es1.")
    assert (data_dir / "peers.db").is_file()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["issue", "--ttl", "0"], "--ttl"),
        (["issue", "--uses", "0"], "--uses"),
        (["issue", "--role", "king"], "--role"),
        (["add", "--peer-id", "a", "--public-key", "ed25519:nonsense"], "--public-key"),
    ],
)
def test_bad_values_are_one_line_usage_errors(
    registry_dir: Path, args: list[str], named: str
) -> None:
    result = cli("keys", *args, "--data-dir", str(registry_dir))
    assert result.returncode == 2
    assert named in error_line(result)
