"""Damaged files, careless operators and full disks: every storage error is typed, names
its file, is logged and counted; nothing is lost or changed silently."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edgeswarm.edge.spool import Spool
from edgeswarm.gateway.log import LogRecord, ObservationLog
from edgeswarm.gateway.peers import PeerRegistry
from edgeswarm.identity import KeyPair, load_or_create_key

from .conftest import edgeswarm_command, start_gateway, stop_process


def run_gateway_once(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """Start a gateway that is expected to refuse to start; its exit and stderr."""
    return subprocess.run(
        edgeswarm_command(
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(data_dir),
            "--metrics-port",
            "-1",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_data_files_are_created_private(tmp_path: Path) -> None:
    PeerRegistry(tmp_path / "peers.db").close()
    with ObservationLog(tmp_path / "observations.db") as log:
        log.submit(LogRecord("e", 1, 1, 1, b"payload", 0.0), lambda outcome: None)
    with Spool(tmp_path / "spool.db") as spool:
        spool.append(1, b"x")
    for name in ("peers.db", "observations.db", "spool.db"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    segments = list((tmp_path / "observations.db-segments").iterdir())
    assert segments
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in segments)


def test_a_leftover_world_readable_temp_file_never_makes_a_key_readable(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "edge.key"
    leftover = tmp_path / "edge.key.tmp"
    leftover.write_bytes(b"junk from an interrupted write")
    leftover.chmod(0o644)
    load_or_create_key(key_file)
    assert key_file.stat().st_mode & 0o777 == 0o600
    KeyPair.generate().save(key_file)  # and when a key is replaced
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert leftover.read_bytes() == b"junk from an interrupted write"  # never written through


def _damage(path: Path, at: int, length: int = 64) -> None:
    with path.open("r+b") as handle:
        handle.seek(at)
        handle.write(b"\xa5" * length)


@pytest.mark.integration
@pytest.mark.parametrize("victim", ["peers.db", "gateway.key"])
def test_a_damaged_registry_or_tls_key_stops_the_gateway_with_one_line_naming_it(
    tmp_path: Path, victim: str
) -> None:
    data_dir = tmp_path / "gw"
    gateway = start_gateway(data_dir)
    stop_process(gateway.process)
    path = data_dir / victim
    if victim == "peers.db":
        _damage(path, 0, 100)  # the header: not a database any more
    else:
        path.write_bytes(path.read_bytes()[:60] + b"!!" + path.read_bytes()[62:])
    result = run_gateway_once(data_dir)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert "Traceback" not in result.stderr
