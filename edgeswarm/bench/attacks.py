"""Unauthenticated attacks on a gateway, bounded in count and time (loopback only).

Used by ``scripts/bench preauth`` and by the tests of the pre-auth budget:

- :func:`flood_initials`: forged QUIC Initial packets (a valid long header,
  a random connection ID, a body that does not decrypt), from one socket;
- :func:`idle_connections`: real QUIC connections that finish TLS and never
  open a stream (the QUIC library answers the gateway's PINGs);
- :func:`prehello_bomb`: one 16 MiB frame of empty msgpack arrays on the
  session stream, before HELLO.

and :func:`ack_probe`, an authenticated edge timing its ACKs meanwhile.
Every attack takes a ``host`` that must be a loopback address.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.reconnect import open_session
from edgeswarm.client.session import GatewayClient
from edgeswarm.identity import KeyPair
from edgeswarm.transport import quic
from edgeswarm.transport.api import SessionLink
from edgeswarm.wire import PROTOCOL_VERSION, Ack, Hello, ObservationBatch, Role, encode_payload

__all__ = [
    "IdleHandler",
    "ProbeResult",
    "ack_probe",
    "flood_initials",
    "forged_initial",
    "idle_connections",
    "prehello_bomb",
    "rss_kib",
]

INITIAL_BYTES = 1200
"""A client Initial is padded to at least this (RFC 9000, 14.1)."""
BOMB_LISTS = 255
"""The pre-HELLO frame is one msgpack array of this many arrays of 65 536 empty arrays
each: 16.7 M objects in 16 MiB, every container within the authenticated limits."""


def _loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"attacks only run against loopback, not {host}")


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """``VmRSS`` (or ``VmHWM``, the peak) of process ``pid``, in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"no {field} for process {pid}")


def forged_initial() -> bytes:
    """A QUIC v1 Initial with a random 8-byte DCID and SCID whose body does not decrypt."""
    dcid, scid = os.urandom(8), os.urandom(8)
    header = bytes([0xC3]) + struct.pack(">I", 1) + bytes([8]) + dcid + bytes([8]) + scid
    header += b"\x00"  # no token
    length = INITIAL_BYTES - len(header) - 2
    return header + struct.pack(">H", 0x4000 | length) + os.urandom(length)


def flood_initials(host: str, port: int, *, count: int, per_s: float) -> float:
    """Send ``count`` forged Initials at ``per_s`` packets per second; seconds taken."""
    _loopback(host)
    started = time.monotonic()
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for i in range(count):
            delay = started + i / per_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            # a full socket buffer drops it, as a network would
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                s.sendto(forged_initial(), (host, port))
    return time.monotonic() - started


class IdleHandler:
    """A session handler that never sends anything: TLS done, no stream, no HELLO."""

    def __init__(self) -> None:
        self.lost = asyncio.Event()
        self.reason = ""

    def connection_made(self, link: SessionLink) -> None:
        pass

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        pass

    def connection_lost(self, reason: str) -> None:
        self.reason = reason
        self.lost.set()


@dataclass
class IdleOutcome:
    """What :func:`idle_connections` saw."""

    established: int
    """Connections whose TLS handshake completed."""
    refused: int
    """Connections the gateway never completed (dropped or timed out)."""
    closed_by_gateway: int
    """Established connections the gateway closed within ``hold_s``."""
    held_s: float
    """How long the established ones were held (until closed or ``hold_s``)."""


async def idle_connections(
    host: str, port: int, ca: Path, *, count: int, hold_s: float, stack: str, connect_s: float = 5
) -> IdleOutcome:
    """Open ``count`` connections that never open a stream; hold them up to ``hold_s``."""
    _loopback(host)
    handlers = [IdleHandler() for _ in range(count)]
    started = time.monotonic()

    async def hold(handler: IdleHandler) -> tuple[bool, bool]:
        """(established, closed by the gateway while held)."""
        try:
            async with quic.connect(
                host, port, ca_file=ca, handler=handler, stack=stack, connect_timeout=connect_s
            ):
                remaining = hold_s - (time.monotonic() - started)
                if remaining > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(remaining):
                            await handler.lost.wait()
                return True, handler.lost.is_set()
        except (ConnectionError, TimeoutError):
            return False, False

    outcomes = await asyncio.gather(*(hold(h) for h in handlers))
    established = sum(ok for ok, _ in outcomes)
    return IdleOutcome(
        established=established,
        refused=count - established,
        closed_by_gateway=sum(closed for _, closed in outcomes),
        held_s=time.monotonic() - started,
    )


class BombHandler(IdleHandler):
    """Sends one 16 MiB frame of 16.7 M empty msgpack arrays as soon as the stream exists."""

    def __init__(self) -> None:
        super().__init__()
        self.received = bytearray()
        self.ended = asyncio.Event()

    def connection_made(self, link: SessionLink) -> None:
        inner = b"\xdd" + struct.pack(">I", 65536) + b"\x90" * 65536  # 65 536 empty arrays
        body = b"\xdc" + struct.pack(">H", BOMB_LISTS) + inner * BOMB_LISTS
        link.send(struct.pack(">I", len(body)) + body)

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        self.received += data
        if end_stream:
            self.ended.set()

    def connection_lost(self, reason: str) -> None:
        super().connection_lost(reason)
        self.ended.set()


async def prehello_bomb(host: str, port: int, ca: Path, *, stack: str, wait_s: float = 30) -> bytes:
    """Send the 16 MiB pre-HELLO frame; the bytes the gateway answered until it closed."""
    _loopback(host)
    handler = BombHandler()
    try:
        async with quic.connect(host, port, ca_file=ca, handler=handler, stack=stack):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await handler.ended.wait()
    except (ConnectionError, TimeoutError):
        pass
    return bytes(handler.received)


@dataclass
class ProbeResult:
    """Ack latencies of an authenticated edge (seconds, send to ACK)."""

    latencies: list[float]
    """One per acknowledged batch, in the order they were sent."""
    sent: int
    """Batches sent."""

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of :attr:`latencies` (0 when empty)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def ack_probe(
    address: GatewayAddress,
    key: KeyPair,
    edge_id: str,
    *,
    duration_s: float,
    per_s: float = 100.0,
    agents: int = 64,
) -> ProbeResult:
    """An enrolled edge sends ``per_s`` batches a second for ``duration_s`` and times
    each ACK (one per batch: no ``ack_through``); it waits for the last ACKs."""
    sent_at: dict[int, float] = {}
    latencies: list[float] = []

    def acked(ack: Ack, through: bool) -> None:
        started = sent_at.pop(ack.seq, None)
        if started is not None:
            latencies.append(time.monotonic() - started)

    hello = Hello(
        version=PROTOCOL_VERSION,
        role=Role.EDGE,
        peer_id=edge_id,
        public_key=key.public_key,
        agents=agents,
    )
    client = GatewayClient(hello, key, on_ack=acked)
    ids = np.arange(agents, dtype=np.uint32)
    observations = np.zeros((agents, 8), np.float32)
    rewards = np.zeros(agents, np.float32)
    seq = 0
    async with open_session(address, client):
        started = time.monotonic()
        while (now := time.monotonic()) - started < duration_s:
            seq += 1
            payload = encode_payload(ObservationBatch(seq, seq, ids, observations, rewards))
            sent_at[seq] = time.monotonic()
            await client.send_batch(payload, seq=seq, count=agents)
            delay = started + seq / per_s - now
            if delay > 0:
                await asyncio.sleep(delay)
        await client.drain(timeout=30)
    return ProbeResult(latencies=latencies, sent=seq)


def main(argv: list[str] | None = None) -> int:
    """``python -m edgeswarm.bench.attacks ATTACK --port P --ca CA``: run one attack in
    its own process (so that it never shares an event loop with what it disturbs) and
    print what it saw as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m edgeswarm.bench.attacks")
    parser.add_argument("attack", choices=("initial_flood", "prehello_bomb", "idle_tls"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", type=Path)
    parser.add_argument("--stack", default="qh3")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--per-s", type=float, default=2_000)
    parser.add_argument("--hold-s", type=float, default=15)
    args = parser.parse_args(argv)
    host = "127.0.0.1"
    result: dict[str, float]
    if args.attack == "initial_flood":
        seconds = flood_initials(host, args.port, count=args.count, per_s=args.per_s)
        result = {"flood_s": seconds}
    elif args.attack == "prehello_bomb":
        answer = asyncio.run(prehello_bomb(host, args.port, args.ca, stack=args.stack))
        result = {"answer_bytes": float(len(answer))}
    else:
        outcome = asyncio.run(
            idle_connections(
                host, args.port, args.ca, count=args.count, hold_s=args.hold_s, stack=args.stack
            )
        )
        result = {
            "established": float(outcome.established),
            "closed_by_gateway": float(outcome.closed_by_gateway),
        }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
