"""The edge's uplink against a real gateway (in-process, real QUIC on loopback): per-batch
ACKs, a small credit window, the ``block`` overflow wait, a spool carried over from an
earlier run."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.reconnect import Backoff
from edgeswarm.edge.gateway_choice import GatewayChoice
from edgeswarm.edge.spool import OverflowPolicy, Spool
from edgeswarm.edge.uplink import Uplink
from edgeswarm.gateway import Gateway
from edgeswarm.identity import KeyPair
from edgeswarm.transport import quic
from edgeswarm.transport.tls import ensure_certificates
from edgeswarm.wire import FEATURE_ACK_THROUGH, PROTOCOL_VERSION, Hello, Role, encode_payload

from .conftest import free_udp_port
from .gateway_harness import batch, serving, wait_until

pytestmark = pytest.mark.integration

AGENTS = 10


def make_uplink(
    gateway_dir: Path,
    port: int,
    spool: Spool,
    key: KeyPair,
    *,
    features: tuple[str, ...] = (FEATURE_ACK_THROUGH,),
) -> Uplink:
    ca = ensure_certificates(gateway_dir).ca  # the gateway reuses them when it starts
    return Uplink(
        hello=Hello(
            version=PROTOCOL_VERSION,
            role=Role.EDGE,
            peer_id="edge-u",
            public_key=key.public_key,
            agents=AGENTS,
            features=features,
        ),
        key=key,
        gateway=GatewayAddress(
            host="127.0.0.1",
            port=port,
            ca_file=ca,
            stack=quic.default_stack(),
            connect_timeout_s=3.0,
        ),
        spool=spool,
        backoff=Backoff(initial_s=0.05, max_s=0.2),
    )


@asynccontextmanager
async def delivering(uplink: Uplink) -> AsyncIterator[Uplink]:
    task = asyncio.create_task(uplink.run())
    try:
        yield uplink
    finally:
        uplink.stop()
        async with asyncio.timeout(10):
            await task


async def submit(uplink: Uplink, count: int) -> None:
    for _ in range(count):
        await uplink.submit([lambda seq: batch(seq, AGENTS)])  # a group of one each


def enroll(gateway: Gateway, key: KeyPair) -> None:
    gateway.peers.add_peer(key.public_key, "edge-u", Role.EDGE, replace=True)


async def test_per_batch_acks_release_each_batch(tmp_path: Path) -> None:
    """A session without ``ack_through``: one ACK per batch, each releases its batch."""
    key = KeyPair.generate()
    async with serving(tmp_path / "gw") as gateway:
        enroll(gateway, key)
        with Spool(tmp_path / "spool.db") as spool:
            uplink = make_uplink(tmp_path / "gw", gateway.port, spool, key, features=())
            async with delivering(uplink):
                await submit(uplink, 20)
                assert await uplink.drain(10)
                client = uplink.client
                assert client is not None
                # no cumulative ACKs in this session: each batch was released by its own
                assert FEATURE_ACK_THROUGH not in client.session.features
            counters = uplink.counters
            assert (counters.batches, counters.acked_batches) == (20, 20)
            assert counters.acked_observations == counters.observations == 20 * AGENTS
            assert (counters.dropped_batches, counters.resent_batches) == (0, 0)
            assert len(spool) == 0
        assert gateway.observation_log.high_water("edge-u") == 20


async def test_a_small_credit_window_is_never_exceeded(tmp_path: Path) -> None:
    """Credit 4: the pump sends 4, waits for ACKs, sends on; the gateway never sees a
    batch beyond the credit (it would refuse it as CREDIT_EXCEEDED)."""
    key = KeyPair.generate()
    async with serving(tmp_path / "gw", credit_window=4) as gateway:
        enroll(gateway, key)
        with Spool(tmp_path / "spool.db") as spool:
            uplink = make_uplink(tmp_path / "gw", gateway.port, spool, key, features=())
            await submit(uplink, 30)  # spooled before the first connection
            async with delivering(uplink):
                await wait_until(lambda: uplink.client is not None)
                client = uplink.client
                assert client is not None
                most_in_flight = 0
                async with asyncio.timeout(10):
                    while uplink.counters.acked_batches < 30:
                        most_in_flight = max(most_in_flight, client.in_flight)
                        await client.wait_change()
                assert client.welcome is not None
                assert client.welcome.credit == 4
                assert most_in_flight <= 4
                assert client.counters.errors_received == 0
        assert gateway.observation_log.high_water("edge-u") == 30
        [record] = [e for e in gateway.stats.status(0.0).edges if e.peer_id == "edge-u"]
        assert record.errors == 0


async def test_block_overflow_waits_for_acks_to_make_room(tmp_path: Path) -> None:
    key = KeyPair.generate()
    size = len(encode_payload(batch(1, AGENTS)))
    port = free_udp_port()  # nobody listens yet: the uplink retries with backoff
    with Spool(tmp_path / "spool.db", max_bytes=3 * size, overflow=OverflowPolicy.BLOCK) as spool:
        uplink = make_uplink(tmp_path / "gw", port, spool, key)
        async with delivering(uplink):
            await submit(uplink, 3)  # the spool is full now
            assert spool.would_overflow(size)
            fourth = asyncio.create_task(submit(uplink, 1))
            for _ in range(20):  # many loop turns, failed connects among them: still waiting
                await asyncio.sleep(0)
            assert not fourth.done()
            assert uplink.counters.batches == 3
            async with serving(tmp_path / "gw", port=port) as gateway:
                enroll(gateway, key)
                acked_when_room: list[int] = []
                fourth.add_done_callback(
                    lambda _: acked_when_room.append(uplink.counters.acked_batches)
                )
                async with asyncio.timeout(10):
                    await fourth
                assert acked_when_room[0] >= 1  # it went on only once an ACK made room
                assert spool.bytes <= 3 * size
                assert await uplink.drain(10)
            counters = uplink.counters
            assert (counters.batches, counters.acked_batches, counters.dropped_batches) == (4, 4, 0)
        assert gateway.observation_log.high_water("edge-u") == 4


async def test_a_spool_carried_over_from_an_earlier_run_is_delivered(tmp_path: Path) -> None:
    key = KeyPair.generate()
    port = free_udp_port()
    with Spool(tmp_path / "spool.db") as spool:  # first run: the gateway never answers
        first = make_uplink(tmp_path / "gw", port, spool, key)
        await submit(first, 5)
        assert len(spool) == 5
    with Spool(tmp_path / "spool.db") as spool:  # second run, same spool
        assert (len(spool), spool.next_seq()) == (5, 6)
        second = make_uplink(tmp_path / "gw", port, spool, key)
        async with serving(tmp_path / "gw", port=port) as gateway:
            enroll(gateway, key)
            async with delivering(second):
                await submit(second, 2)  # seqs 6 and 7
                assert await second.drain(10)
            counters = second.counters
            # this run's batches, and the carried-over ones with their observations
            assert (counters.batches, counters.observations) == (2, 2 * AGENTS)
            assert counters.acked_batches == 7
            assert counters.acked_observations == 7 * AGENTS
            assert len(spool) == 0
        assert [r.seq for r in gateway.observation_log.read("edge-u")] == [1, 2, 3, 4, 5, 6, 7]


async def test_a_gateway_that_cannot_be_reached_is_the_one_the_log_line_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With two gateways configured, the warning names the gateway that failed and the
    one tried next (it named the next one as the one unreachable)."""
    first, second = free_udp_port(), free_udp_port()
    key = KeyPair.generate()
    uplink = make_uplink(tmp_path / "gw", first, Spool(tmp_path / "spool.db"), key)
    uplink.gateways = GatewayChoice(
        (uplink.gateway, dataclasses.replace(uplink.gateway, port=second))
    )

    def warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("gateway unreachable")]

    with caplog.at_level(logging.WARNING, logger="edgeswarm"):
        async with delivering(uplink):
            await wait_until(lambda: len(warnings()) >= 2, timeout=30)
    one, two = warnings()[:2]
    assert (one.gateway, one.next_gateway) == (f"127.0.0.1:{first}", f"127.0.0.1:{second}")  # type: ignore[attr-defined]
    assert (two.gateway, two.next_gateway) == (f"127.0.0.1:{second}", f"127.0.0.1:{first}")  # type: ignore[attr-defined]
