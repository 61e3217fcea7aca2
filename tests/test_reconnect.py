"""Reaching a gateway again and again (``client/reconnect.py``), in this process: the
backoff's delays, the attempt count that a session resets, and ``open_session``
against a real gateway on loopback (WELCOME, refusal, a gateway that never answers)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.errors import AuthRefusedError
from edgeswarm.client.reconnect import Backoff, Reconnect, open_session
from edgeswarm.client.session import GatewayClient
from edgeswarm.identity import KeyPair
from edgeswarm.transport import quic
from edgeswarm.transport.quic import ConnectTimeoutError
from edgeswarm.wire import PROTOCOL_VERSION, Hello, Role

from .gateway_harness import serving


class FixedRandom(random.Random):
    """A generator whose every draw is ``value``: the jitter's two ends."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


# --- Backoff -----------------------------------------------------------------------------


def test_backoff_defaults() -> None:
    backoff = Backoff()
    assert (backoff.initial_s, backoff.max_s, backoff.factor) == (0.2, 5.0, 2.0)


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (5, 3.2), (6, 5.0), (40, 5.0)],
)
def test_the_delay_grows_by_the_factor_up_to_the_cap(attempt: int, ceiling: float) -> None:
    """Full jitter over the upper half: the lowest draw gives d/2, the highest d."""
    backoff = Backoff()
    assert backoff.delay(attempt, FixedRandom(0.0)) == pytest.approx(ceiling / 2)
    assert backoff.delay(attempt, FixedRandom(1.0)) == pytest.approx(ceiling)
    assert backoff.delay(attempt, FixedRandom(0.5)) == pytest.approx(0.75 * ceiling)


def test_attempts_below_one_wait_the_first_delay() -> None:
    backoff = Backoff(initial_s=1.0, max_s=60.0, factor=3.0)
    for attempt in (-2, 0, 1):
        assert backoff.delay(attempt, FixedRandom(1.0)) == pytest.approx(1.0)
    assert backoff.delay(2, FixedRandom(1.0)) == pytest.approx(3.0)


def test_delays_stay_within_their_half_open_band() -> None:
    backoff = Backoff(initial_s=0.1, max_s=2.0, factor=2.0)
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(2.0, 0.1 * 2.0 ** (attempt - 1))
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered, not one fixed value


# --- Reconnect ---------------------------------------------------------------------------


def test_failures_count_up_and_a_session_resets_them() -> None:
    backoff = Backoff(initial_s=1.0, max_s=100.0, factor=10.0)
    reconnect = Reconnect(backoff, seed=3)
    assert reconnect.backoff is backoff
    assert reconnect.attempt == 0
    first = reconnect.failed()
    assert reconnect.attempt == 1
    assert 0.5 <= first <= 1.0
    second = reconnect.failed()
    assert reconnect.attempt == 2
    assert 5.0 <= second <= 10.0
    reconnect.succeeded()
    assert reconnect.attempt == 0
    again = reconnect.failed()
    assert reconnect.attempt == 1
    assert 0.5 <= again <= 1.0


def test_a_seed_makes_the_delays_repeatable() -> None:
    backoff = Backoff()
    first = Reconnect(backoff, seed=11)
    second = Reconnect(backoff, seed=11)
    delays = [first.failed() for _ in range(8)]
    assert delays == [second.failed() for _ in range(8)]
    rng = random.Random(11)  # the same draws as Backoff.delay with a generator of that seed
    assert delays == [backoff.delay(n, rng) for n in range(1, 9)]
    assert delays != [Reconnect(backoff, seed=12).failed() for _ in range(8)]


def test_without_a_seed_two_edges_draw_apart() -> None:
    """The jitter keeps a fleet that lost its gateway from coming back in lockstep."""
    backoff = Backoff()
    draws = {tuple(Reconnect(backoff).failed() for _ in range(4)) for _ in range(5)}
    assert len(draws) == 5


# --- open_session against a real gateway ---------------------------------------------------


def client_for(key: KeyPair, peer_id: str = "edge-r") -> GatewayClient:
    hello = Hello(
        version=PROTOCOL_VERSION,
        role=Role.EDGE,
        peer_id=peer_id,
        public_key=key.public_key,
        agents=4,
    )
    return GatewayClient(hello, key)


def address_of(port: int, ca_file: Path, timeout_s: float = 3.0) -> GatewayAddress:
    return GatewayAddress(
        host="127.0.0.1",
        port=port,
        ca_file=ca_file,
        stack=quic.default_stack(),
        connect_timeout_s=timeout_s,
    )


@pytest.mark.integration
async def test_open_session_yields_the_link_and_the_welcome(tmp_path: Path) -> None:
    key = KeyPair.generate()
    async with serving(tmp_path / "gw", credit_window=7) as gateway:
        gateway.peers.add_peer(key.public_key, "edge-r", Role.EDGE, replace=True)
        assert gateway.ca_file is not None
        client = client_for(key)
        async with open_session(address_of(gateway.port, gateway.ca_file), client) as (
            link,
            welcome,
        ):
            assert welcome is client.welcome
            assert welcome.credit == 7
            assert link is not None
            assert [e.peer_id for e in gateway.stats.status(0.0).edges] == ["edge-r"]


@pytest.mark.integration
async def test_open_session_raises_when_the_gateway_refuses(tmp_path: Path) -> None:
    async with serving(tmp_path / "gw") as gateway:
        assert gateway.ca_file is not None
        client = client_for(KeyPair.generate())  # never enrolled
        with pytest.raises(AuthRefusedError):
            async with open_session(address_of(gateway.port, gateway.ca_file), client):
                pytest.fail("a session opened for an unknown key")


@pytest.mark.integration
async def test_open_session_gives_up_on_a_silent_port(tmp_path: Path) -> None:
    """Nothing answers (a UDP socket that reads nothing): the connect timeout ends it."""
    async with serving(tmp_path / "gw") as gateway:  # only for its CA
        ca_file = gateway.ca_file
    assert ca_file is not None
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        port = silent.getsockname()[1]
        address = address_of(port, ca_file, timeout_s=0.5)
        with pytest.raises(ConnectTimeoutError):
            async with open_session(address, client_for(KeyPair.generate())):
                pytest.fail("a session opened with nobody there")
    finally:
        silent.close()
