"""Peers nobody has authenticated yet get a small, fixed budget: forged Initial floods,
idle TLS connections and oversize frames before HELLO cost the gateway almost nothing,
and authenticated edges keep being served (a real gateway process; attacks bounded in
count and time; memory from /proc)."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeswarm.bench.attacks import (
    ack_probe,
    flood_initials,
    idle_connections,
    prehello_bomb,
    rss_kib,
)
from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.reconnect import open_session
from edgeswarm.client.session import GatewayClient
from edgeswarm.identity import KeyPair
from edgeswarm.transport.quic import default_stack
from edgeswarm.wire import (
    PROTOCOL_VERSION,
    Bye,
    Error,
    ErrorCode,
    Frame,
    FrameReader,
    Hello,
    Role,
    decode_payload,
)

from .conftest import RunningGateway, start_gateway, stop_process

pytestmark = pytest.mark.integration

MIB = 1024


def metric(gateway: RunningGateway, name: str) -> float:
    url = f"http://127.0.0.1:{gateway.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} not exported"
    return float(match[1])


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def address(gateway: RunningGateway) -> GatewayAddress:
    return GatewayAddress(port=gateway.port, ca_file=gateway.ca, stack=default_stack())


def enrolled(gateway: RunningGateway, edge_id: str) -> KeyPair:
    key = KeyPair.generate()
    gateway.enroll(key, edge_id)
    return key


async def _flood_beside_an_edge(gateway: RunningGateway) -> tuple[int, float]:
    probe = asyncio.create_task(
        ack_probe(address(gateway), enrolled(gateway, "probe"), "probe", duration_s=6)
    )
    seconds = await asyncio.to_thread(
        flood_initials, "127.0.0.1", gateway.port, count=20_000, per_s=4_000
    )
    result = await probe
    assert len(result.latencies) == result.sent  # every batch acknowledged meanwhile
    return result.sent, seconds


def test_a_flood_of_forged_initials_creates_nothing(gateway: RunningGateway) -> None:
    """20 000 forged Initials at 4 000/s: before, each made a connection object that lived
    30 s (+590 MB). Now a forged Initial either gets a stateless Retry or makes a
    connection that is dropped in the same wakeup, because it did not decrypt."""
    pid = gateway.process.pid
    before = rss_kib(pid)
    sent, seconds = asyncio.run(_flood_beside_an_edge(gateway))
    growth = rss_kib(pid, "VmHWM") - before
    assert growth < 64 * MIB, f"gateway grew {growth} KiB under the flood"
    assert sent > 100
    assert seconds < 30
    stopped = metric(gateway, "edgeswarm_gateway_preauth_retries_total") + metric(
        gateway, "edgeswarm_gateway_preauth_discarded_total"
    )
    assert stopped >= 19_000  # nearly all of them (some the socket dropped)
    assert metric(gateway, "edgeswarm_gateway_preauth_connections") == 0
    assert gateway.process.poll() is None


@pytest.fixture
def strict_gateway(tmp_path: Path):
    running = start_gateway(
        tmp_path / "gateway",
        "--hello-timeout",
        "2",
        "--max-unauthenticated-per-address",
        "16",
    )
    try:
        yield running
    finally:
        stop_process(running.process)


def test_idle_tls_connections_are_closed_at_the_hello_deadline(
    strict_gateway: RunningGateway,
) -> None:
    """Connections that finish TLS and never open a stream: before, they were held as
    long as the peer wished. Now at most 16 at once from one address, each closed
    ``hello_timeout`` after its first packet."""
    outcome = asyncio.run(
        idle_connections(
            "127.0.0.1",
            strict_gateway.port,
            strict_gateway.ca,
            count=40,
            hold_s=12,
            stack=default_stack(),
            connect_s=3,
        )
    )
    assert outcome.established >= 1
    assert outcome.closed_by_gateway == outcome.established
    assert outcome.held_s < 11  # every one was closed well before the attacker let go
    assert metric(strict_gateway, "edgeswarm_gateway_preauth_refused_total") >= 1
    assert metric(strict_gateway, "edgeswarm_gateway_preauth_expired_total") >= 1
    # attempts the attacker gave up on are closed by their own deadline (2 s + 1 s grace)
    wait_for(lambda: metric(strict_gateway, "edgeswarm_gateway_preauth_connections") == 0, 6)
    # and an edge that authenticates is served
    probe = asyncio.run(
        ack_probe(
            address(strict_gateway), enrolled(strict_gateway, "e"), "e", duration_s=3, per_s=20
        )
    )
    assert len(probe.latencies) == probe.sent


async def _bomb_beside_an_edge(gateway: RunningGateway) -> tuple[list[Frame], float]:
    probe = asyncio.create_task(
        ack_probe(address(gateway), enrolled(gateway, "probe"), "probe", duration_s=5)
    )
    await asyncio.sleep(0.5)  # the probe is sending before the attack starts
    answer = await prehello_bomb("127.0.0.1", gateway.port, gateway.ca, stack=default_stack())
    result = await probe
    assert len(result.latencies) == result.sent
    reader = FrameReader()
    reader.feed(answer)
    frames: list[Frame] = []
    while (payload := reader.next_payload()) is not None:
        frames.append(decode_payload(payload))
    return frames, max(result.latencies)


def test_a_16_mib_frame_before_hello_is_refused_from_its_prefix(
    gateway: RunningGateway,
) -> None:
    """Before, the 16 MiB frame of empty arrays was buffered and decoded (1.2 GB, the loop
    stalled 4-5 s). Now its 4-byte prefix is over the handshake's limit."""
    pid = gateway.process.pid
    before = rss_kib(pid)
    frames, slowest_ack = asyncio.run(_bomb_beside_an_edge(gateway))
    error, bye = frames
    assert isinstance(error, Error)
    assert error.code == ErrorCode.FRAME_TOO_LARGE
    assert isinstance(bye, Bye)
    growth = rss_kib(pid, "VmHWM") - before
    assert growth < 96 * MIB, f"gateway grew {growth} KiB"
    assert slowest_ack < 2.0  # the loop never stalled for seconds


async def _connect_through_retry(gateway: RunningGateway) -> str:
    key = enrolled(gateway, "validated")
    hello = Hello(
        version=PROTOCOL_VERSION, role=Role.EDGE, peer_id="validated", public_key=key.public_key
    )
    client = GatewayClient(hello, key)
    async with open_session(address(gateway), client) as (_, welcome):
        return welcome.gateway_id


def test_above_the_threshold_new_connections_prove_their_address(tmp_path: Path) -> None:
    """``--retry-above 0``: every attempt gets a QUIC Retry first; real clients (either
    stack) answer it and get in."""
    gateway = start_gateway(tmp_path / "gateway", "--retry-above", "0")
    try:
        assert asyncio.run(_connect_through_retry(gateway))
        assert metric(gateway, "edgeswarm_gateway_preauth_retries_total") >= 1
        assert metric(gateway, "edgeswarm_gateway_preauth_authenticated_total") >= 1
    finally:
        stop_process(gateway.process)
