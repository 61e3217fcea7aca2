"""The client half of suite "transport": load clients that keep a window of frames
in flight and match acks to sends (raw acks, or acks out of a real client ``Session``),
and the server processes they talk to."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgeswarm.bench.transport_server import ACK
from edgeswarm.identity import KeyPair
from edgeswarm.transport import quic
from edgeswarm.wire import (
    FEATURE_ACK_THROUGH,
    PROTOCOL_VERSION,
    AckReceived,
    Auth,
    ChallengeReceived,
    Hello,
    ObservationBatch,
    Role,
    Session,
    SessionConfig,
    Welcomed,
    auth_message,
    encode_frame,
)

BATCH = 512
"""Observations per frame."""
OBS_DIM = 8
SERVER_SOURCE_ENV = "EDGESWARM_BENCH_SERVER_SOURCE"
"""A directory holding another checkout's ``edgeswarm`` package: the servers run
that code (the clients this one), to compare a change's server side with its base."""
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid``, all threads (``/proc``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


_OBSERVATIONS = np.random.default_rng(7).random((BATCH, OBS_DIM), dtype=np.float32)
_AGENT_IDS = np.arange(BATCH, dtype=np.uint32)
_REWARDS = np.zeros(BATCH, dtype=np.float32)


def observation_frame(seq: int, count: int = BATCH) -> bytes:
    """One encoded OBS_BATCH frame of ``count`` observations."""
    batch = ObservationBatch(
        seq=seq,
        tick=seq,
        agent_ids=_AGENT_IDS[:count],
        observations=_OBSERVATIONS[:count],
        rewards=_REWARDS[:count],
    )
    return encode_frame(batch)


class LoadClient:
    """A ``StreamHandler`` that sends frames, matches acks to sends, keeps a window."""

    def __init__(self) -> None:
        self.link: quic.SessionLink | None = None
        self.in_flight: dict[int, tuple[float, int]] = {}
        self.acked = 0
        """Observations acknowledged."""
        self.acked_batches = 0
        self.rtts: list[float] = []
        self.record_rtt = False
        self.changed = asyncio.Event()
        self.lost: str | None = None
        self.next_seq = 1

    def connection_made(self, link: quic.SessionLink) -> None:
        self.link = link

    def connection_lost(self, reason: str) -> None:
        self.lost = reason
        self.changed.set()

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        raise NotImplementedError

    def acked_seq(self, seq: int, now: float, *, through: bool = False) -> None:
        """Frame ``seq`` was acknowledged (``through``: and every frame before it)."""
        for acked in [s for s in self.in_flight if s <= seq] if through else [seq]:
            sent = self.in_flight.pop(acked, None)
            if sent is not None:
                self.acked += sent[1]
                self.acked_batches += 1
                if self.record_rtt:
                    self.rtts.append(now - sent[0])
        self.changed.set()

    def send_frame(self, frame: bytes, count: int) -> None:
        assert self.link is not None
        self.in_flight[self.next_seq] = (time.perf_counter(), count)
        self.next_seq += 1
        self.link.send(frame)

    async def wait(self) -> None:
        if self.lost is not None:
            raise ConnectionError(self.lost)
        self.changed.clear()
        await self.changed.wait()


class RawClient(LoadClient):
    """Acks are 12-byte frames carrying the frame number."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        buffer = self._buffer
        buffer += data
        now = time.perf_counter()
        whole = len(buffer) - len(buffer) % ACK.size
        for offset in range(0, whole, ACK.size):
            self.acked_seq(ACK.unpack_from(buffer, offset)[1], now)
        del buffer[:whole]


class SessionClient(LoadClient):
    """Speaks the real session; acks come out of a client ``Session``."""

    def __init__(self, peer_id: str) -> None:
        super().__init__()
        self.session = Session(SessionConfig(is_client=True), now=time.monotonic())
        self.peer_id = peer_id
        self.key = KeyPair.generate()
        self.welcomed = False

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        session = self.session
        session.receive_data(data, time.monotonic())
        now = time.perf_counter()
        while (event := session.next_event()) is not None:
            if isinstance(event, AckReceived):
                through = FEATURE_ACK_THROUGH in session.features
                self.acked_seq(event.ack.seq, now, through=through)
            elif isinstance(event, ChallengeReceived):
                answer_challenge(self, event)
            elif isinstance(event, Welcomed):
                self.welcomed = True
                self.changed.set()
        out = session.data_to_send()
        if out and self.link is not None:
            self.link.send(out)


async def session_handshake(client: SessionClient) -> None:
    """HELLO -> CHALLENGE -> AUTH -> WELCOME; the gateway knows ``client.key`` beforehand."""
    assert client.link is not None
    client.session.hello(
        Hello(
            version=PROTOCOL_VERSION,
            role=Role.EDGE,
            peer_id=client.peer_id,
            public_key=client.key.public_key,
            agents=BATCH,
            features=(FEATURE_ACK_THROUGH,),  # as the edge asks
        )
    )
    client.link.send(client.session.data_to_send())
    while not client.welcomed:
        await client.wait()


def answer_challenge(client: SessionClient, event: ChallengeReceived) -> None:
    """Sign the gateway's nonce (AUTH); the reply leaves with the next flush."""
    hello = client.session.local_hello
    assert hello is not None
    message = auth_message(
        nonce=event.challenge.nonce, gateway_id=event.challenge.gateway_id, hello=hello
    )
    client.session.authenticate(Auth(signature=client.key.sign(message)))


# --- server processes ----------------------------------------------------


class ServerProcess:
    """A transport_server process; ``port`` and ``ca`` once it listens."""

    def __init__(
        self,
        kind: str,
        stack: str,
        settings: quic.TransportSettings,
        peers: dict[str, bytes] | None = None,
    ) -> None:
        enrolled = {peer_id: key.hex() for peer_id, key in (peers or {}).items()}
        env = dict(os.environ)
        source = os.environ.get(SERVER_SOURCE_ENV)
        if source:  # another checkout's servers, measured by this client
            env["PYTHONPATH"] = source
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgeswarm.bench.transport_server",
                kind,
                stack,
                json.dumps(asdict(settings)),
                json.dumps(enrolled),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"bench server {kind}/{stack} did not start")
        info = json.loads(line)
        self.port: int = info["port"]
        self.ca = Path(info["ca"])

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used so far (all its threads), or None where
        the system does not say (it is read from ``/proc/<pid>/stat``: Linux)."""
        return process_cpu_seconds(self.process.pid)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
