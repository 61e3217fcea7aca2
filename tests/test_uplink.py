"""The edge's delivery path: a batch is encoded once, and its spooled bytes are what leaves.

The spool keeps each batch's observation count beside its payload, so neither
starting over a full spool nor sending it decodes a batch; the session sends
the spooled payload byte for byte (checked like any frame it sends).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import numpy as np
import pytest

from edgeswarm.client.address import GatewayAddress
from edgeswarm.edge.batch_groups import observation_count
from edgeswarm.edge.spool import Spool
from edgeswarm.edge.uplink import Uplink
from edgeswarm.gateway import Gateway, GatewayConfig
from edgeswarm.identity import KeyPair
from edgeswarm.transport.quic import default_stack
from edgeswarm.wire import (
    FEATURE_ACK_THROUGH,
    PROTOCOL_VERSION,
    FrameType,
    Hello,
    LocalProtocolError,
    ObservationBatch,
    ObservationsReceived,
    Role,
    decode_payload,
    encode_payload,
)
from edgeswarm.wire.framing import encode_prefix

from .conftest import start_gateway, stop_process
from .test_wire_session import connected, events

EDGE_ID = "edge-u"


def batch(seq: int, n: int) -> ObservationBatch:
    return ObservationBatch(
        seq=seq,
        tick=seq,
        agent_ids=np.arange(n, dtype=np.uint32),
        observations=np.full((n, 8), seq, dtype=np.float32),
        rewards=np.zeros(n, dtype=np.float32),
    )


def with_extra_key(payload: bytes) -> bytes:
    """The same OBS_BATCH with a key this version does not know (allowed: protocol, 8)."""
    fields = msgpack.unpackb(payload, raw=False)
    fields["note"] = "a newer edge's field"
    extended: bytes = msgpack.packb(fields, use_bin_type=True)
    assert isinstance(decode_payload(extended), ObservationBatch)
    return extended


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


def edge_hello(key: KeyPair) -> Hello:
    """The HELLO of edge ``EDGE_ID`` with ``key`` (cumulative ACKs on)."""
    return Hello(
        version=PROTOCOL_VERSION,
        role=Role.EDGE,
        peer_id=EDGE_ID,
        public_key=key.public_key,
        features=(FEATURE_ACK_THROUGH,),
    )


async def deliver_all(uplink: Uplink, timeout: float) -> bool:
    """Run the uplink until everything spooled is acknowledged (False: not in time)."""
    delivery = asyncio.create_task(uplink.run())
    try:
        return await uplink.drain(timeout)
    finally:
        uplink.stop()
        async with asyncio.timeout(5.0):
            await delivery


def counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count the calls of ``msgpack.<name>`` from now on."""
    calls: list[int] = []
    real: Callable[..., Any] = getattr(msgpack, name)

    def count(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(msgpack, name, count)
    return calls


async def test_spooled_bytes_leave_as_they_are_and_nothing_is_decoded_to_count_them(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = {1: 5, 2: 7, 3: 11}
    spooled = {seq: with_extra_key(encode_payload(batch(seq, n))) for seq, n in sizes.items()}
    with Spool(tmp_path / "spool.db") as spool:  # what an earlier run left behind
        for seq, payload in spooled.items():
            spool.append(seq, payload, count=sizes[seq])
    key = KeyPair.generate()
    gateway.peers.add_peer(key.public_key, EDGE_ID, Role.EDGE)
    hello = edge_hello(key)
    unpacked = counting(monkeypatch, "unpackb")
    with Spool(tmp_path / "spool.db") as spool:
        uplink = Uplink(
            hello=hello,
            key=key,
            gateway=GatewayAddress(
                port=gateway.port, ca_file=tmp_path / "gw" / "ca.crt", stack=default_stack()
            ),
            spool=spool,
        )
        assert unpacked == []  # starting over three spooled batches decoded none of them
        monkeypatch.undo()
        assert await deliver_all(uplink, 10.0)
    assert uplink.counters.acked_batches == 3
    assert uplink.counters.acked_observations == sum(sizes.values())
    stored = {record.seq: record.payload for record in gateway.observation_log.read(EDGE_ID)}
    assert stored == spooled  # byte for byte: not decoded and encoded again on the way


def test_a_session_sends_an_encoded_batch_byte_for_byte_within_its_limits() -> None:
    client, server = connected()  # WELCOME: credit 8, at most 1000 agents
    payload = with_extra_key(encode_payload(batch(1, 4)))
    client.send_encoded(FrameType.OBS_BATCH, payload, count=4)
    data = client.data_to_send()
    assert data == encode_prefix(len(payload)) + payload
    server.receive_data(data, 0.0)
    [received] = events(server)
    assert isinstance(received, ObservationsReceived)
    assert (received.seq, received.count, received.payload) == (1, 4, payload)
    with pytest.raises(LocalProtocolError, match="at most 1000 agents"):
        client.send_encoded(FrameType.OBS_BATCH, payload, count=1001)
    for _ in range(7):
        client.send_encoded(FrameType.OBS_BATCH, payload, count=4)
    with pytest.raises(LocalProtocolError, match="no credit"):
        client.send_encoded(FrameType.OBS_BATCH, payload, count=4)


def test_a_version_1_spool_gets_its_counts_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE spool (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
        "INSERT INTO meta VALUES ('next_seq', 3), ('dropped_batches', 0), ('dropped_bytes', 0);"
        "PRAGMA user_version=1;"
    )
    db.executemany(
        "INSERT INTO spool VALUES (?, ?)", [(1, encode_payload(batch(1, 6))), (2, b"junk")]
    )
    db.commit()
    db.close()
    with Spool(path, count_of=observation_count) as spool:
        assert (spool.count(1), spool.count(2), spool.count_through(2)) == (6, 0, 6)
        assert [seq for seq, _ in spool.pending()] == [1, 2]
        assert spool.next_seq() == 3


async def test_acks_are_read_while_a_window_is_still_being_sent(tmp_path: Path) -> None:
    """Before: the pump handed QUIC every batch its credit allowed in one turn of the loop,
    so no ACK was read before the last of them had left (at 100 000 agents a tick's ACKs
    waited for the whole tick). Now each batch is transmitted in a turn of its own and
    the ACKs that arrived meanwhile are read before the next one. (The gateway is a
    process of its own, as in production: it commits and acknowledges while we send.)"""
    gateway = start_gateway(tmp_path / "gw")
    key = KeyPair.generate()
    gateway.enroll(key, EDGE_ID)
    hello = edge_hello(key)
    try:
        with Spool(tmp_path / "spool.db") as spool:
            uplink = Uplink(
                hello=hello,
                key=key,
                gateway=GatewayAddress(
                    port=gateway.port, ca_file=gateway.ca, stack=default_stack()
                ),
                spool=spool,
            )
            window = 250  # within the gateway's credit (256): nothing waits for credit
            await uplink.submit([lambda seq: batch(seq, 2048)] * window)  # 21 MB, one group
            sent_at_ack: list[int] = []
            acked = uplink._acked

            def record(ack: Any, through: bool) -> None:
                sent_at_ack.append(uplink._max_sent_seq)  # batches handed to QUIC by then
                acked(ack, through)

            uplink._acked = record  # type: ignore[method-assign]
            assert await deliver_all(uplink, 30.0)
    finally:
        stop_process(gateway.process)
    assert uplink.counters.acked_batches == window
    assert sent_at_ack
    assert sent_at_ack[0] < window // 2, sent_at_ack[:5]
