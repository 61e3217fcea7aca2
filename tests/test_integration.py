"""Real gateway and edge processes exchanging QUIC traffic on loopback."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edgeswarm.identity import KeyPair
from edgeswarm.transport import quic
from edgeswarm.wire import (
    FEATURE_ACK_THROUGH,
    Ack,
    Bye,
    Error,
    ErrorCode,
    Welcome,
    encode_frame,
    encode_payload,
)

from .conftest import ADMIN_ID, RunningGateway, edgeswarm_command
from .gateway_harness import batch, batches
from .raw_peer import RawPeer

pytestmark = pytest.mark.integration


def run_edge(
    gateway: RunningGateway,
    edge_id: str,
    *,
    agents: int,
    ticks: int,
    first_id: int = 0,
    tick_hz: float = 0,
    batch_agents: int = 1000,
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[str]:
    data_dir = gateway.data_dir.parent / edge_id
    return subprocess.Popen(
        edgeswarm_command(
            "edge",
            "--edge-id",
            edge_id,
            "--ca",
            str(gateway.ca),
            "--gateway",
            f"127.0.0.1:{gateway.port}",
            "--agents",
            str(agents),
            "--first-agent-id",
            str(first_id),
            "--ticks",
            str(ticks),
            "--tick-hz",
            str(tick_hz),
            "--batch-agents",
            str(batch_agents),
            "--metrics-port",
            "0",
            "--progress-interval",
            "0",
            "--data-dir",
            str(data_dir),
            "--join-token",
            gateway.edge_token(),
            *extra,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def summary_of(process: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    stdout, stderr = process.communicate(timeout=timeout)
    lines: list[dict[str, Any]] = [
        json.loads(line) for line in stdout.splitlines() if line.startswith("{")
    ]
    summaries = [line for line in lines if line.get("event") == "summary"]
    assert summaries, f"no summary (rc={process.returncode}): {stderr[-2000:]}"
    assert process.returncode == 0, stderr[-2000:]
    return summaries[-1]


def test_two_edges_every_batch_acknowledged(gateway: RunningGateway) -> None:
    edges = [
        run_edge(gateway, f"edge-{i}", agents=3000, ticks=20, first_id=i * 3000) for i in range(2)
    ]
    summaries = [summary_of(edge) for edge in edges]
    for summary in summaries:
        assert summary["observations_sent"] == 3000 * 20
        assert summary["observations_acked"] == 3000 * 20
        assert summary["batches_acked"] == 3 * 20
        assert summary["in_flight"] == 0
        assert summary["policies_quarantined"] == 0

    status = asyncio.run(gateway.status())
    by_id = {edge["peer_id"]: edge for edge in status["edges"]}
    assert set(by_id) == {"edge-0", "edge-1"}
    for edge in by_id.values():
        assert edge["observations"] == 60_000
        assert edge["batches"] == 60
        assert edge["last_seq"] == 60
        assert edge["connected"] is False
        assert edge["errors"] == 0


async def _garbage_after_auth(gateway: RunningGateway) -> tuple[Welcome, Error]:
    peer, key = RawPeer(), KeyPair.generate()
    gateway.enroll(key, "vandal")
    async with quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peer):
        await peer.handshake(key, "vandal")
        welcome = await peer.wait_for(Welcome)
        peer.send(b"\x00\x00\x00\x05garbg")
        error = await peer.wait_for(Error)
    return welcome, error


async def _garbage_first(gateway: RunningGateway) -> Error:
    peer = RawPeer()
    async with quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peer):
        peer.send(b"\xff\xff\xff\xff" + b"\x00" * 64)
        return await peer.wait_for(Error)


def test_garbage_gets_error_frame_and_other_edge_is_served(gateway: RunningGateway) -> None:
    edge = run_edge(gateway, "honest", agents=2000, ticks=40, tick_hz=20)
    welcome, error = asyncio.run(_garbage_after_auth(gateway))
    assert welcome.gateway_id == "gateway-0"
    assert error.code == ErrorCode.MALFORMED_FRAME
    oversize = asyncio.run(_garbage_first(gateway))
    assert oversize.code == ErrorCode.FRAME_TOO_LARGE

    summary = summary_of(edge)
    assert summary["observations_acked"] == summary["observations_sent"] == 2000 * 40
    assert gateway.process.poll() is None, "gateway died"
    log = gateway.log.read_text()
    assert "protocol violation" in log
    assert "MALFORMED_FRAME" in log


def test_status_cli_json_and_metrics(gateway: RunningGateway, tmp_path: Path) -> None:
    summary_of(run_edge(gateway, "edge-m", agents=500, ticks=4))
    admin_key = tmp_path / "admin.key"
    gateway.admin_key.save(admin_key)
    result = subprocess.run(
        edgeswarm_command(
            "status",
            "--gateway",
            f"127.0.0.1:{gateway.port}",
            "--ca",
            str(gateway.ca),
            "--key",
            str(admin_key),
            "--admin-id",
            ADMIN_ID,
            "--json",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    status = json.loads(result.stdout)
    assert status["edges"][0]["peer_id"] == "edge-m"
    assert status["edges"][0]["observations"] == 2000

    url = f"http://127.0.0.1:{gateway.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    assert "edgeswarm_gateway_observations_total 2000.0" in text
    # the durable log's own series, read at scrape time: 4 batches, in at least one commit
    assert "edgeswarm_gateway_log_records_total 4.0" in text
    commits = next(
        line for line in text.splitlines() if line.startswith("edgeswarm_gateway_log_commits_total")
    )
    assert 1 <= float(commits.split()[1]) <= 4
    assert "edgeswarm_gateway_log_records_lost_at_open 0.0" in text
    assert "edgeswarm_gateway_log_pending_bytes 0.0" in text


def test_edge_refuses_gateway_with_unpinned_certificate(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    from edgeswarm.transport.tls import create_certificates

    other = create_certificates(tmp_path / "other-ca")
    edge = subprocess.run(
        edgeswarm_command(
            "edge",
            "--edge-id",
            "e",
            "--ca",
            str(other.ca),
            "--gateway",
            f"127.0.0.1:{gateway.port}",
            "--agents",
            "10",
            "--ticks",
            "1",
            "--metrics-port",
            "-1",
            "--data-dir",
            str(tmp_path / "edge-e"),
            "--drain-timeout",
            "8",  # time for a first refused handshake under a competing load (2 s was not)
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert edge.returncode == 1  # nothing acknowledged: the batch stays spooled
    assert "certificate" in edge.stderr.lower()
    summary = json.loads(edge.stdout.splitlines()[-1])
    assert summary["observations_acked"] == 0
    assert summary["connects"] == 0
    status = asyncio.run(gateway.status())
    assert len(status["edges"]) == 0


async def _send_batches(
    gateway: RunningGateway, peer_id: str, features: tuple[str, ...], n: int
) -> list[Ack]:
    peer, key = RawPeer(), KeyPair.generate()
    gateway.enroll(key, peer_id)
    async with quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peer):
        await peer.handshake(key, peer_id, features=features)
        welcome = await peer.wait_for(Welcome)
        assert (FEATURE_ACK_THROUGH in welcome.features) == (FEATURE_ACK_THROUGH in features)
        # all in one send: they reach the gateway's log in few commit groups
        peer.send(batches(1, n))
        async with asyncio.timeout(10):
            while not any(isinstance(f, Ack) and f.seq == n for f in peer.frames):
                peer.changed.clear()
                await peer.changed.wait()
    return [f for f in peer.frames if isinstance(f, Ack)]


def test_ack_through_acknowledges_a_commit_group_with_one_ack(gateway: RunningGateway) -> None:
    n = 50
    each = asyncio.run(_send_batches(gateway, "one-ack-per-batch", (), n))
    assert [a.seq for a in each] == list(range(1, n + 1))  # v2 peers without the feature
    assert all(a.accepted == 10 for a in each)

    cumulative = asyncio.run(_send_batches(gateway, "cumulative", (FEATURE_ACK_THROUGH,), n))
    seqs = [a.seq for a in cumulative]
    assert seqs == sorted(seqs)
    assert seqs[-1] == n
    assert len(cumulative) <= n // 2, seqs  # one per commit group, not per batch
    assert sum(a.accepted for a in cumulative) == 10 * n  # every observation, once
    credits = [a.credit for a in cumulative]
    assert credits == sorted(credits)
    assert credits[-1] >= n

    status = asyncio.run(gateway.status())
    by_id = {edge["peer_id"]: edge for edge in status["edges"]}
    assert by_id["cumulative"]["batches"] == by_id["one-ack-per-batch"]["batches"] == n


async def _log_fails_mid_session(gateway: RunningGateway, key: KeyPair) -> tuple[RawPeer, int]:
    peer = RawPeer()
    async with quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peer):
        await peer.handshake(key, "unlucky", features=(FEATURE_ACK_THROUGH,))
        await peer.wait_for(Welcome)
        peer.send(batches(1, 5))
        async with asyncio.timeout(10):
            while not any(isinstance(f, Ack) and f.seq == 5 for f in peer.frames):
                peer.changed.clear()
                await peer.changed.wait()
        # another writer holds the log's lock past the gateway's busy timeout (5 s)
        blocker = sqlite3.connect(gateway.data_dir / "observations.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            peer.send(batches(6, 8))
            await peer.wait_for(Bye, timeout=20)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    again = RawPeer()
    async with quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=again):
        await again.handshake(key, "unlucky", features=(FEATURE_ACK_THROUGH,))
        welcome = await again.wait_for(Welcome)
    return peer, welcome.resume_seq


def test_a_failed_commit_closes_the_session_and_no_ack_covers_it(gateway: RunningGateway) -> None:
    key = KeyPair.generate()
    gateway.enroll(key, "unlucky")
    peer, resume_seq = asyncio.run(_log_fails_mid_session(gateway, key))
    bye = next(f for f in peer.frames if isinstance(f, Bye))
    assert bye.code == ErrorCode.INTERNAL_ERROR
    acks = [f for f in peer.frames if isinstance(f, Ack)]
    assert max(a.seq for a in acks) == 5  # cumulative ACKs never reach the failed batches
    assert sum(a.accepted for a in acks) == 50
    assert resume_seq == 5  # the gateway holds 1..5 and nothing of 6..8: the edge resends them
    assert gateway.process.poll() is None
    assert "durable log failed" in gateway.log.read_text()


def _pending_bytes(gateway: RunningGateway) -> float:
    url = f"http://127.0.0.1:{gateway.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("edgeswarm_gateway_log_pending_bytes "):
                return float(line.split()[1])
    raise AssertionError("edgeswarm_gateway_log_pending_bytes not exposed")


async def _same_seqs_from_two_edges(gateway: RunningGateway, n: int) -> list[list[Ack]]:
    keys = {edge_id: KeyPair.generate() for edge_id in ("edge-a", "edge-b")}
    peers = {edge_id: RawPeer() for edge_id in keys}
    for edge_id, key in keys.items():
        gateway.enroll(key, edge_id)
    size = len(encode_payload(batch(1)))
    async with (
        quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peers["edge-a"]),
        quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peers["edge-b"]),
    ):
        for edge_id, peer in peers.items():
            await peer.handshake(keys[edge_id], edge_id)
            await peer.wait_for(Welcome)
        # The log cannot commit while another connection holds its write lock (the
        # gateway waits up to 5 s). The batches queue in arrival order, a1 b1 a2 b2 ...:
        # however the writer cuts that queue into two groups (what it took before it
        # blocked, the rest after), one of them holds both edges' batch k for some k.
        blocker = sqlite3.connect(gateway.data_dir / "observations.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            queued = 0
            for seq in range(1, n + 1):
                for peer in peers.values():
                    peer.send(encode_frame(batch(seq)))
                    queued += 1
                    deadline = time.monotonic() + 5
                    while await asyncio.to_thread(_pending_bytes, gateway) < queued * size:
                        assert time.monotonic() < deadline, "the gateway did not queue the batch"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        for peer in peers.values():
            async with asyncio.timeout(10):
                while not any(isinstance(f, Ack) and f.seq == n for f in peer.frames):
                    peer.changed.clear()
                    await peer.changed.wait()
    return [[f for f in peer.frames if isinstance(f, Ack)] for peer in peers.values()]


def test_the_same_seq_from_two_edges_in_one_commit_group_is_applied_for_both(
    gateway: RunningGateway,
) -> None:
    """Batches are keyed by (edge, seq): edge-b's batch 2 is not a repeat of edge-a's."""
    n = 4
    for acks in asyncio.run(_same_seqs_from_two_edges(gateway, n)):
        assert [a.seq for a in acks] == list(range(1, n + 1))
    with sqlite3.connect(gateway.data_dir / "observations.db") as db:
        rows = set(db.execute("SELECT edge_id, seq FROM batches"))
    assert rows == {(e, s) for e in ("edge-a", "edge-b") for s in range(1, n + 1)}
    status = asyncio.run(gateway.status())
    by_id = {edge["peer_id"]: edge for edge in status["edges"]}
    assert by_id["edge-a"]["batches"] == by_id["edge-b"]["batches"] == n
    assert by_id["edge-a"]["observations"] == by_id["edge-b"]["observations"] == 10 * n
