"""A gateway in the test's own process (real QUIC on loopback), raw sessions to it, and
a plug that holds the observation log's writer so that commit groups are arranged,
not left to thread timing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgeswarm.gateway import Gateway, GatewayConfig
from edgeswarm.gateway.log import AppendResult, LogRecord, ObservationLog
from edgeswarm.identity import KeyPair
from edgeswarm.transport import quic
from edgeswarm.wire import ObservationBatch, Role, Welcome, encode_frame

from .raw_peer import RawPeer

WAIT_S = 10.0
"""Longest wait for a condition that normally holds within milliseconds."""


@asynccontextmanager
async def serving(data_dir: Path, **config: Any) -> AsyncIterator[Gateway]:
    """A started gateway on 127.0.0.1 (any port unless ``port=``), no metrics server
    unless asked; ``config`` as :class:`GatewayConfig`. Closed on exit."""
    settings: dict[str, Any] = {"port": 0, "metrics_port": None, "stack": quic.default_stack()}
    gateway = Gateway(GatewayConfig(data_dir=data_dir, **{**settings, **config}))
    await gateway.start()
    try:
        yield gateway
    finally:
        gateway.close()
        await gateway.wait_closed()


@asynccontextmanager
async def raw_session(
    gateway: Gateway,
    peer_id: str,
    *,
    features: tuple[str, ...] = (),
    key: KeyPair | None = None,
    role: Role = Role.EDGE,
) -> AsyncIterator[tuple[RawPeer, Welcome]]:
    """An enrolled peer past WELCOME, speaking the protocol by hand."""
    key = key or KeyPair.generate()
    gateway.peers.add_peer(key.public_key, peer_id, role, replace=True)
    assert gateway.ca_file is not None
    peer = RawPeer()
    async with quic.connect(
        "127.0.0.1", gateway.port, ca_file=gateway.ca_file, handler=peer, stack=gateway.config.stack
    ):
        await peer.handshake(key, peer_id, role=role, features=features)
        welcome = await peer.wait_for(Welcome)
        yield peer, welcome


def batch(seq: int, agents: int = 10) -> ObservationBatch:
    """A small OBS_BATCH: ``agents`` agents, 8 observations each."""
    return ObservationBatch(
        seq=seq,
        tick=seq,
        agent_ids=np.arange(agents, dtype=np.uint32),
        observations=np.zeros((agents, 8), np.float32),
        rewards=np.zeros(agents, np.float32),
    )


def batches(first: int, last: int, agents: int = 10) -> bytes:
    """OBS_BATCH frames ``first..last`` back to back, ready for one send."""
    return b"".join(encode_frame(batch(seq, agents)) for seq in range(first, last + 1))


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Poll ``predicate`` on the event loop until it holds; AssertionError after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


class WriterPlug:
    """Holds an :class:`ObservationLog`'s writer thread until :meth:`release`.

    ``submit`` callbacks run on the writer thread, so a plug record whose
    callback blocks keeps the writer from taking its next group. What is
    queued meanwhile goes into the next group as a whole: commit groups are
    arranged by the test, not by thread timing. The plug record (edge
    ``plug:<n>``, seq 1) is committed like any other.
    """

    _made = 0

    def __init__(self, log: ObservationLog) -> None:
        WriterPlug._made += 1
        self.edge_id = f"plug:{WriterPlug._made}"
        self._log = log
        self.entered = threading.Event()
        """Set once the writer is inside the plug's callback."""
        self._release = threading.Event()

    def insert(self) -> WriterPlug:
        """Queue the plug (it holds the writer once its group has committed)."""

        def hold(outcome: AppendResult | BaseException) -> None:
            self.entered.set()
            self._release.wait(WAIT_S)

        self._log.submit(LogRecord(self.edge_id, 1, 0, 1, b"plug", 0.0), hold)
        return self

    def hold(self) -> WriterPlug:
        """Queue the plug and wait (blocking) until it holds the writer."""
        self.insert()
        assert self.entered.wait(WAIT_S), "the writer never reached the plug"
        return self

    async def held(self) -> WriterPlug:
        """:meth:`hold`, without blocking the event loop."""
        self.insert()
        entered = await asyncio.to_thread(self.entered.wait, WAIT_S)
        assert entered, "the writer never reached the plug"
        return self

    def release(self) -> None:
        """Let the writer go on."""
        self._release.set()

    def __enter__(self) -> WriterPlug:
        return self.hold()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
