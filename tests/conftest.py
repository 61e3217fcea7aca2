"""Fixtures shared by the test suite: real gateway processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from edgeswarm.edge.io.mosquitto import Mosquitto, mosquitto_binary
from edgeswarm.gateway.peers import PeerRegistry
from edgeswarm.identity import KeyPair
from edgeswarm.wire import Role

if TYPE_CHECKING:
    from .test_placement_service import Fleet

STARTUP_TIMEOUT_S = 30
ADMIN_ID = "test-admin"


@dataclass
class RunningGateway:
    """A gateway process started for a test."""

    process: subprocess.Popen[str]
    port: int
    ca: Path
    metrics_port: int
    data_dir: Path
    log: Path
    admin_key: KeyPair

    def registry(self) -> PeerRegistry:
        return PeerRegistry(self.data_dir / "peers.db")

    def edge_token(self, uses: int = 1) -> str:
        with self.registry() as registry:
            return registry.issue_token(Role.EDGE, ttl_s=600, uses=uses)

    def enroll(self, key: KeyPair, peer_id: str, role: Role = Role.EDGE) -> None:
        with self.registry() as registry:
            registry.add_peer(key.public_key, peer_id, role, replace=True)

    async def status(self) -> dict[str, Any]:
        from edgeswarm.client.address import GatewayAddress
        from edgeswarm.client.admin import fetch_status
        from edgeswarm.transport.quic import default_stack

        return await fetch_status(
            GatewayAddress(port=self.port, ca_file=self.ca, stack=default_stack()),
            key=self.admin_key,
            admin_id=ADMIN_ID,
        )


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 nobody listens on (as of now): a dead port, or one to
    start a gateway on later."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def edgeswarm_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgeswarm", *args]


def start_gateway(
    data_dir: Path, *extra: str, port: int = 0, log: Path | None = None, ca: Path | None = None
) -> RunningGateway:
    """A gateway process on loopback; its stderr goes to ``log`` (``data_dir/gateway.log``).
    ``ca``: the CA of the certificate given with ``--cert`` (the gateway's own otherwise)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    admin_key = KeyPair.generate()
    with PeerRegistry(data_dir / "peers.db") as registry:
        registry.add_peer(admin_key.public_key, ADMIN_ID, Role.ADMIN, replace=True)
    log = log or data_dir / "gateway.log"
    with log.open("a") as stderr:
        process = subprocess.Popen(
            edgeswarm_command(
                "gateway",
                "--listen",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(data_dir),
                "--metrics-port",
                "0",
                *extra,
            ),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(STARTUP_TIMEOUT_S)
        raise AssertionError(f"gateway did not start: {log.read_text()}")
    info = json.loads(line)
    return RunningGateway(
        process=process,
        port=int(info["port"]),
        ca=ca or Path(info["ca"]),
        metrics_port=int(info["metrics_port"]),
        data_dir=data_dir,
        log=log,
        admin_key=admin_key,
    )


def stop_process(process: subprocess.Popen[str], timeout: float = 15) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    return process.returncode


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path / "gateway")
    try:
        yield running
    finally:
        stop_process(running.process)
        if running.process.stdout is not None:
            running.process.stdout.close()


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours *_proxy variables; tests only talk to 127.0.0.1.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("http_proxy", "HTTP_PROXY"):
        if name in os.environ:
            monkeypatch.delenv(name)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real Mosquitto broker on 127.0.0.1 (skips, saying why, where it is not installed)."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (scripts/test installs the Debian package as root)")
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    broker = Mosquitto(binary, directory)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def open_fleet(tmp_path: Path) -> Iterator[Callable[[], Fleet]]:
    """Opens placement fleets (test_placement_service.Fleet) on ``tmp_path / "placement.db"``,
    closed after the test: a store runs a thread for its checkpoint file."""
    from .test_placement_service import Fleet

    opened: list[Fleet] = []

    def open_one() -> Fleet:
        opened.append(Fleet(tmp_path / "placement.db"))
        return opened[-1]

    yield open_one
    for fleet in opened:
        fleet.close()
