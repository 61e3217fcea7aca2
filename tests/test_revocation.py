"""Revocation that bites: a key removed from ``peers.db`` by another process loses its
open session within a second (ERROR + BYE ``KEY_REVOKED``), logged and counted; the
client stops instead of retrying; ``edgeswarm keys remove`` stops a running edge."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.errors import AuthRefusedError
from edgeswarm.client.reconnect import open_session
from edgeswarm.client.session import GatewayClient
from edgeswarm.gateway import Gateway, GatewayConfig
from edgeswarm.gateway.peers import PeerRegistry
from edgeswarm.identity import KeyPair
from edgeswarm.transport.quic import default_stack
from edgeswarm.wire import PROTOCOL_VERSION, ErrorCode, Hello, Role

from .conftest import edgeswarm_command, start_gateway, stop_process
from .operator import cli, error_line, json_logs


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    config = GatewayConfig(
        port=0, metrics_port=None, data_dir=tmp_path / "gw", stack=default_stack()
    )
    running = Gateway(config)
    await running.start()
    try:
        yield running
    finally:
        running.close()


def client_of(key: KeyPair, peer_id: str, role: Role = Role.EDGE) -> GatewayClient:
    hello = Hello(version=PROTOCOL_VERSION, role=role, peer_id=peer_id, public_key=key.public_key)
    return GatewayClient(hello, key)


def address(gateway: Gateway, tmp_path: Path) -> GatewayAddress:
    return GatewayAddress(
        port=gateway.port, ca_file=tmp_path / "gw" / "ca.crt", stack=default_stack()
    )


async def closed_within(client: GatewayClient, seconds: float) -> float:
    """Seconds until the gateway closed ``client``'s session (fails past ``seconds``)."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        while client.closed_reason is None:
            await client.wait_change()
    return time.monotonic() - started


def revoked_total(gateway: Gateway, role: str) -> float:
    text = generate_latest(gateway.stats.metrics.registry).decode()
    for line in text.splitlines():
        if line.startswith(f'edgeswarm_gateway_sessions_revoked_total{{role="{role}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no revoked series for {role}:\n{text}")


async def test_a_removed_key_loses_its_open_session_within_a_second(
    gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kept, removed = KeyPair.generate(), KeyPair.generate()
    gateway.peers.add_peer(kept.public_key, "edge-kept", Role.EDGE)
    gateway.peers.add_peer(removed.public_key, "edge-gone", Role.EDGE)
    staying, leaving = client_of(kept, "edge-kept"), client_of(removed, "edge-gone")
    assert revoked_total(gateway, "edge") == 0  # shown before the first revocation
    caplog.set_level(logging.WARNING, logger="edgeswarm.gateway")
    async with (
        open_session(address(gateway, tmp_path), staying),
        open_session(address(gateway, tmp_path), leaving),
    ):
        # what `edgeswarm keys remove` does: another connection to the same file
        with PeerRegistry(tmp_path / "gw" / "peers.db", create=False) as operator:
            assert operator.remove_peer("edge-gone")
        await closed_within(leaving, 1.0)
        assert leaving.closed_code == ErrorCode.KEY_REVOKED
        with pytest.raises(AuthRefusedError, match=r"KEY_REVOKED.*removed from the registry"):
            leaving.raise_if_closed()
        assert staying.closed_reason is None  # the other edge's session goes on
        await asyncio.sleep(2 * gateway.revocations.interval_s)  # a later check changes nothing
        assert staying.closed_reason is None
    assert revoked_total(gateway, "edge") == 1
    [record] = [r for r in caplog.records if r.getMessage().startswith("session revoked")]
    assert (record.peer_id, record.code) == ("edge-gone", "KEY_REVOKED")  # type: ignore[attr-defined]


async def test_replacing_a_peers_key_revokes_the_old_keys_session(
    gateway: Gateway, tmp_path: Path
) -> None:
    old, new = KeyPair.generate(), KeyPair.generate()
    gateway.peers.add_peer(old.public_key, "admin-1", Role.ADMIN)
    session = client_of(old, "admin-1", Role.ADMIN)
    async with open_session(address(gateway, tmp_path), session):
        with PeerRegistry(tmp_path / "gw" / "peers.db", create=False) as operator:
            operator.add_peer(new.public_key, "admin-1", Role.ADMIN, replace=True)
        await closed_within(session, 1.0)
    assert session.closed_code == ErrorCode.KEY_REVOKED
    assert revoked_total(gateway, "admin") == 1


async def test_other_changes_to_the_registry_close_nothing(
    gateway: Gateway, tmp_path: Path
) -> None:
    key = KeyPair.generate()
    gateway.peers.add_peer(key.public_key, "edge-1", Role.EDGE)
    session = client_of(key, "edge-1")
    async with open_session(address(gateway, tmp_path), session):
        with PeerRegistry(tmp_path / "gw" / "peers.db", create=False) as operator:
            operator.issue_token(Role.EDGE)
            operator.add_peer(KeyPair.generate().public_key, "edge-2", Role.EDGE)
        await asyncio.sleep(3 * gateway.revocations.interval_s)
        assert session.closed_reason is None
        assert await session.request_status(5.0)  # still served
    assert gateway.revocations.revoked == 0


@pytest.mark.integration
def test_keys_remove_stops_a_running_edge_with_status_3(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path / "gw")
    try:
        edge_dir = tmp_path / "edge"
        edge_dir.mkdir()
        with (edge_dir / "edge.log").open("w") as log:
            edge = subprocess.Popen(
                edgeswarm_command(
                    *("edge", "--edge-id", "edge-r", "--ca", str(gateway.ca)),
                    *("--gateway", f"127.0.0.1:{gateway.port}", "--data-dir", str(edge_dir)),
                    *("--agents", "100", "--tick-hz", "20", "--metrics-port", "-1"),
                    *("--progress-interval", "0", "--duration", "120"),
                ),
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "EDGESWARM_JOIN_TOKEN": gateway.edge_token()},
            )
        deadline = time.monotonic() + 60
        while "connected to gateway" not in (edge_dir / "edge.log").read_text():
            assert edge.poll() is None, (edge_dir / "edge.log").read_text()
            assert time.monotonic() < deadline, "the edge never connected"
            time.sleep(0.1)
        removed = cli("keys", "remove", "--data-dir", str(gateway.data_dir), "--peer-id", "edge-r")
        assert removed.returncode == 0, removed.stderr
        removed_at = time.monotonic()
        edge.communicate(timeout=60)
        assert edge.returncode == 3  # refused for good: not an outage to retry
        assert time.monotonic() - removed_at < 15  # not its 120 s: it stopped at once
        stderr = (edge_dir / "edge.log").read_text()
        lines = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, stderr[-3000:]
        assert "KEY_REVOKED" in lines[0]
        assert "keys add" in lines[0]  # what to do
        gateway_log = json_logs(gateway.log.read_text())
        assert any(
            r["message"].startswith("session revoked") and r["peer_id"] == "edge-r"
            for r in gateway_log
        )
    finally:
        stop_process(gateway.process)
    again = cli("keys", "remove", "--data-dir", str(gateway.data_dir), "--peer-id", "edge-r")
    assert again.returncode == 1
    assert "no peer 'edge-r'" in error_line(again)
