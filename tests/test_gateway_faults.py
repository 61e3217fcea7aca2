"""The gateway under faults of its own making or its peers': a peer that never finishes
the handshake, a log that cannot commit yet, lags, is full or is closed.

In-process gateway over real QUIC on loopback (``gateway_harness``); the log's
writer is held with a plug so that what is committed when is arranged, not
left to thread timing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from edgeswarm.gateway import Gateway
from edgeswarm.identity import KeyPair
from edgeswarm.state import SwarmDocument
from edgeswarm.transport import quic
from edgeswarm.wire import (
    FEATURE_ACK_THROUGH,
    FEATURE_STATE,
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Challenge,
    Error,
    ErrorCode,
    Hello,
    Role,
    StateSyncRequest,
    StateUpdate,
    encode_frame,
    encode_payload,
)

from .gateway_harness import WriterPlug, batch, batches, raw_session, serving, wait_until
from .raw_peer import RawPeer

pytestmark = pytest.mark.integration

HELLO_TIMEOUT_S = 0.5


def acks(peer: RawPeer) -> list[Ack]:
    return [f for f in peer.frames if isinstance(f, Ack)]


def refused_batches(gateway: Gateway, reason: str) -> float:
    value = gateway.stats.metrics.registry.get_sample_value(
        "edgeswarm_gateway_log_refused_batches_total", {"reason": reason}
    )
    return value or 0.0


# --------------------------------------------------------------------------- HELLO deadline


async def _closed_at_deadline(tmp_path: Path, *, answer_challenge: bool) -> tuple[Error, float]:
    async with serving(tmp_path / "gw", hello_timeout_s=HELLO_TIMEOUT_S) as gateway:
        key = KeyPair.generate()
        gateway.peers.add_peer(key.public_key, "slow", Role.EDGE)
        assert gateway.ca_file is not None
        peer = RawPeer()
        async with quic.connect(
            "127.0.0.1",
            gateway.port,
            ca_file=gateway.ca_file,
            handler=peer,
            stack=gateway.config.stack,
        ):
            started = time.monotonic()
            if answer_challenge:  # HELLO, then silence where the AUTH should be
                peer.send(
                    encode_frame(
                        Hello(
                            version=PROTOCOL_VERSION,
                            role=Role.EDGE,
                            peer_id="slow",
                            public_key=key.public_key,
                        )
                    )
                )
                await peer.wait_for(Challenge)
            else:  # two bytes of a length prefix: the session stream exists, no frame
                peer.send(b"\x00\x00")
            bye = await peer.wait_for(Bye, timeout=HELLO_TIMEOUT_S + 5)
            elapsed = time.monotonic() - started
            await wait_until(lambda: peer.lost is not None)
        assert bye.code == ErrorCode.HELLO_TIMEOUT
        [error] = [f for f in peer.frames if isinstance(f, Error)]
        await wait_until(lambda: gateway.connections == set())  # it let go of the connection
    return error, elapsed


async def test_a_connection_that_sends_no_hello_is_closed_at_the_deadline(tmp_path: Path) -> None:
    error, elapsed = await _closed_at_deadline(tmp_path, answer_challenge=False)
    assert error.code == ErrorCode.HELLO_TIMEOUT
    assert "0.5 s" in error.message
    # the promise is about time: not before the deadline, and not much after it
    assert HELLO_TIMEOUT_S - 0.05 <= elapsed < HELLO_TIMEOUT_S + 2.0


async def test_a_peer_that_never_answers_the_challenge_is_closed_at_the_deadline(
    tmp_path: Path,
) -> None:
    error, elapsed = await _closed_at_deadline(tmp_path, answer_challenge=True)
    assert error.code == ErrorCode.HELLO_TIMEOUT
    assert HELLO_TIMEOUT_S - 0.05 <= elapsed < HELLO_TIMEOUT_S + 2.0


# --------------------------------------------------------------------------- ACK after commit


async def test_no_ack_leaves_before_its_batch_is_committed(tmp_path: Path) -> None:
    """ACKs wait for the commit: with the writer held, a frame answered after the batches
    (STATE_SYNC -> STATE_UPDATE, on the same ordered stream) arrives with no ACK before it."""
    async with (
        serving(tmp_path / "gw") as gateway,
        raw_session(gateway, "edge-a", features=(FEATURE_STATE,)) as (peer, _),
    ):
        probe = encode_frame(StateSyncRequest(state_vector=SwarmDocument("x").state_vector()))
        updates_before = sum(isinstance(f, StateUpdate) for f in peer.frames)
        plug = await WriterPlug(gateway.observation_log).held()
        try:
            peer.send(batches(1, 5) + probe)
            await wait_until(
                lambda: sum(isinstance(f, StateUpdate) for f in peer.frames) > updates_before
            )
            assert acks(peer) == []  # everything the gateway sent so far: no ACK among it
            assert gateway.observation_log.pending_records == 5
            assert gateway.observation_log.high_water("edge-a") == 0
        finally:
            plug.release()
        async with asyncio.timeout(10):
            while len(acks(peer)) < 5:
                peer.changed.clear()
                await peer.changed.wait()
                # an ACK never runs ahead of the log (same process: look at the log now)
                log = gateway.observation_log
                assert max(a.seq for a in acks(peer)) <= log.high_water("edge-a")
        assert [a.seq for a in acks(peer)] == [1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- credit


async def test_the_credit_window_shrinks_while_the_log_lags(tmp_path: Path) -> None:
    """Batches waiting for the log beyond max_log_backlog_bytes: ACKs grant no new credit
    (window / 8) until the backlog is gone."""
    size = len(encode_payload(batch(1)))
    async with (
        serving(tmp_path / "gw", credit_window=64, max_log_backlog_bytes=3 * size) as gateway,
        raw_session(gateway, "edge-a") as (peer, welcome),
    ):
        assert welcome.credit == 64
        log = gateway.observation_log
        first = await WriterPlug(log).held()
        peer.send(batches(1, 1))
        await wait_until(lambda: log.pending_records == 1)
        # batch 1 and a second plug form the next group: batch 1 commits, its ACK is
        # held in the writer by the second plug while batches 2..8 queue behind it
        second = WriterPlug(log).insert()
        first.release()
        assert await asyncio.to_thread(second.entered.wait, 10)
        blocker = log_lock(log.path)  # group 2..8 cannot commit while batch 1's ACK goes
        try:
            peer.send(batches(2, 8))
            await wait_until(lambda: log.pending_records == 7)
            second.release()
            await wait_until(lambda: len(acks(peer)) == 1)
            # 7 batches (> 3 batches' bytes) lag: window 64 // 8 = 8, credit stays 64
            assert acks(peer)[0] == Ack(seq=1, accepted=10, credit=64)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await wait_until(lambda: len(acks(peer)) == 8)
        # no lag any more: every ACK extends the window to acked + 64
        assert [a.credit for a in acks(peer)] == [64, *range(2 + 64, 9 + 64)]


def log_lock(path: Path):
    """Another connection holding the log's write lock (commits wait, up to 5 s)."""
    import sqlite3

    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


# --------------------------------------------------------------------------- full, closed log


async def test_a_full_log_refuses_a_batch_closes_that_session_and_serves_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    size = len(encode_payload(batch(1)))
    backlog = 2 * size  # the log takes 4 x this before it refuses: 8 batches
    async with serving(tmp_path / "gw", max_log_backlog_bytes=backlog) as gateway:
        key = KeyPair.generate()
        async with raw_session(gateway, "other", features=(FEATURE_ACK_THROUGH,)) as (other, _):
            with caplog.at_level(logging.ERROR, logger="edgeswarm.gateway"):
                async with raw_session(gateway, "edge-a", key=key) as (peer, _):
                    with WriterPlug(gateway.observation_log):
                        peer.send(batches(1, 12))
                        bye = await peer.wait_for(Bye)
                        assert gateway.observation_log.pending_records == 8  # the 9th did not fit
            assert bye.code == ErrorCode.INTERNAL_ERROR
            assert acks(peer) == []  # batches 1..8 committed after the session ended
            [record] = [r for r in caplog.records if "durable log failed" in r.getMessage()]
            assert record.seq == 9  # type: ignore[attr-defined]
            assert "bytes pending" in record.error  # type: ignore[attr-defined]
            # the other session never noticed
            other.send(batches(1, 3))
            await wait_until(lambda: any(a.seq == 3 for a in acks(other)))
            assert sum(a.accepted for a in acks(other)) == 30
        await wait_until(lambda: gateway.observation_log.high_water("edge-a") == 8)
        assert refused_batches(gateway, "overloaded") == 1
        # the edge comes back: the gateway holds 1..8, it resends 9..12
        async with raw_session(gateway, "edge-a", key=key) as (again, welcome):
            assert welcome.resume_seq == 8
            again.send(batches(9, 12))
            await wait_until(lambda: len(acks(again)) == 4)
        assert gateway.observation_log.high_water("edge-a") == 12


async def test_a_closed_log_refuses_a_batch_and_closes_the_session(tmp_path: Path) -> None:
    async with serving(tmp_path / "gw") as gateway:
        async with raw_session(gateway, "edge-a") as (peer, _):
            peer.send(batches(1, 2))
            await wait_until(lambda: len(acks(peer)) == 2)
            gateway.observation_log.close()  # e.g. the gateway is shutting down
            peer.send(batches(3, 3))
            bye = await peer.wait_for(Bye)
        assert bye.code == ErrorCode.INTERNAL_ERROR
        assert [a.seq for a in acks(peer)] == [1, 2]
        assert refused_batches(gateway, "closed") == 1
        assert refused_batches(gateway, "overloaded") == 0
