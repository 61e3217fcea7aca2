"""Suite "transport": observations through QUIC, the full path against its ceilings.

Every case sends OBS_BATCH-sized frames of 512 observations (8 float32 each)
from this process to a server in another process on 127.0.0.1 (each pinned
to its own core where the machine has two), keeping a window of frames in
flight, and counts acknowledged observations.

- ``edgeswarm``: the real :class:`~edgeswarm.gateway.Gateway` on the default
  stack; the client speaks the real session (HELLO -> WELCOME, then encoded
  ``ObservationBatch`` frames; acks decoded by a client ``Session``)
- ``aioquic_raw`` / ``qh3_raw``: the same frame bytes over the QUIC adapter on
  one stack, the server only splits frames and acks each: the ceilings
- ``grpc_unary``: one grpcio unary call per observation, many concurrent
  callers (benchmark only; grpcio is not a runtime dependency)

Metrics, per case:

- ``obs_per_s``: acknowledged observations per second, saturated;
- ``rtt_p50_ms`` / ``rtt_p99_ms``: send -> ack of one-observation batches on a
  second connection while background load runs at half the measured maximum;
- ``rtt_p99_ms_10pct``: the same probe with background load at a tenth of it;
- ``cpu_us_per_batch`` (QUIC cases, Linux): CPU time the server process used
  during the saturated phase (user + system, every thread, from
  ``/proc/<pid>/stat``), per batch it acknowledged then. Ratios of these,
  unlike ratios of rates, hold on a machine with other load or other cores.

``EDGESWARM_BENCH_SERVER_SOURCE=DIR`` runs the servers from the ``edgeswarm``
package in ``DIR`` (another checkout), measured by this client: a change's
server side against its base, CPU per batch included.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeswarm.bench import BenchResult
from edgeswarm.bench.transport_clients import (
    BATCH,
    OBS_DIM,
    LoadClient,
    RawClient,
    ServerProcess,
    SessionClient,
    observation_frame,
    session_handshake,
)
from edgeswarm.bench.transport_server import GRPC_METHOD
from edgeswarm.transport import quic

WINDOW = 256
SATURATE_S = 3.0
RTT_S = 2.0
PROBE_INTERVAL_S = 0.003
MAX_BATCHES = 200_000
GRPC_CALLERS = 64
START_TIMEOUT_S = 30.0


# --- load shapes ---------------------------------------------------------


async def _paced(send: Callable[[], None], rate_per_s: float, stop: asyncio.Event) -> None:
    """Call ``send`` ``rate_per_s`` times a second until ``stop``."""
    start = time.perf_counter()
    done = 0
    while not stop.is_set():
        due = int((time.perf_counter() - start) * rate_per_s)
        while done < due:
            send()
            done += 1
        await asyncio.sleep(0.001)


async def _probe(probe: Callable[[], Awaitable[float]], seconds: float) -> tuple[float, float]:
    rtts: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        rtts.append(await probe())
        await asyncio.sleep(PROBE_INTERVAL_S)
    values = np.array(rtts) * 1e3
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


# --- cases ---------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    """What one case measured."""

    obs_per_s: float
    rtt_p50_ms: float
    rtt_p99_ms: float
    rtt_p99_ms_10pct: float
    cpu_us_per_batch: float | None = None
    """None where the server is not ours to measure per batch (grpc)."""

    def results(self, case: str) -> list[BenchResult]:
        out = [
            BenchResult("transport", case, "obs_per_s", self.obs_per_s, "obs/s"),
            BenchResult("transport", case, "rtt_p50_ms", self.rtt_p50_ms, "ms"),
            BenchResult("transport", case, "rtt_p99_ms", self.rtt_p99_ms, "ms"),
            BenchResult("transport", case, "rtt_p99_ms_10pct", self.rtt_p99_ms_10pct, "ms"),
        ]
        if self.cpu_us_per_batch is not None:
            out.append(
                BenchResult("transport", case, "cpu_us_per_batch", self.cpu_us_per_batch, "us")
            )
        return out


async def _probe_under_load(
    background: Callable[[], None], rate_per_s: float, probe: Callable[[], Awaitable[float]]
) -> tuple[float, float]:
    """(p50, p99) ms of ``probe`` while ``background`` runs ``rate_per_s`` times a second."""
    stop = asyncio.Event()
    pacer = asyncio.create_task(_paced(background, rate_per_s, stop))
    try:
        return await _probe(probe, RTT_S)
    finally:
        stop.set()
        await pacer


async def quic_case(
    kind: str,
    stack: str,
    settings: quic.TransportSettings,
    *,
    seconds: float = SATURATE_S,
    client_stack: str | None = None,
) -> CaseResult:
    """Everything a case measures against a ``gateway``, ``raw`` or ``native`` server."""
    client_stack = client_stack or stack
    session = kind == "gateway"
    load: LoadClient = SessionClient("bench-load") if session else RawClient()
    probe: LoadClient = SessionClient("bench-probe") if session else RawClient()
    peers = {
        client.peer_id: client.key.public_key
        for client in (load, probe)
        if isinstance(client, SessionClient)
    }
    server = ServerProcess(kind, stack, settings, peers)
    frames = [observation_frame(seq) for seq in range(1, 65)]
    probe_frame = observation_frame(0, count=1)
    try:
        async with (
            quic.connect(
                "127.0.0.1",
                server.port,
                ca_file=server.ca,
                handler=load,
                stack=client_stack,
                settings=settings,
            ),
            quic.connect(
                "127.0.0.1",
                server.port,
                ca_file=server.ca,
                handler=probe,
                stack=client_stack,
                settings=settings,
            ),
        ):
            if isinstance(load, SessionClient) and isinstance(probe, SessionClient):
                await session_handshake(load)
                await session_handshake(probe)
            make = _frame_source(frames, session)
            cpu_before, batches_before = server.cpu_seconds(), load.acked_batches
            rate = await _saturate_with(load, make, seconds)
            cpu_after, batches = server.cpu_seconds(), load.acked_batches - batches_before
            cpu_us_per_batch = None
            if cpu_before is not None and cpu_after is not None and batches:
                cpu_us_per_batch = (cpu_after - cpu_before) / batches * 1e6

            def background() -> None:  # within the window (the gateway's credit)
                if len(load.in_flight) < WINDOW:
                    load.send_frame(make(load.next_seq), BATCH)

            async def one() -> float:
                seq = probe.next_seq
                probe.record_rtt = False
                start = time.perf_counter()
                probe.send_frame(observation_frame(seq, count=1) if session else probe_frame, 1)
                while seq in probe.in_flight:
                    await probe.wait()
                return time.perf_counter() - start

            p50, p99 = await _probe_under_load(background, rate / 2 / BATCH, one)
            _, p99_10pct = await _probe_under_load(background, rate / 10 / BATCH, one)
        return CaseResult(rate, p50, p99, p99_10pct, cpu_us_per_batch)
    finally:
        server.close()


def _frame_source(frames: list[bytes], session: bool) -> Callable[[int], bytes]:
    if session:  # the gateway reads seqs, so every frame is encoded with its own
        return observation_frame
    return lambda seq: frames[seq % len(frames)]


async def _saturate_with(client: LoadClient, make: Callable[[int], bytes], seconds: float) -> float:
    start = time.perf_counter()
    deadline = start + seconds
    acked0 = client.acked
    sent = 0
    while time.perf_counter() < deadline and sent < MAX_BATCHES:
        while len(client.in_flight) >= WINDOW:
            await client.wait()
        while len(client.in_flight) < WINDOW:
            client.send_frame(make(client.next_seq), BATCH)
            sent += 1
        await asyncio.sleep(0)
    while client.in_flight and time.perf_counter() < deadline + 2.0:
        await client.wait()
    return (client.acked - acked0) / (time.perf_counter() - start)


async def grpc_case(*, seconds: float = SATURATE_S) -> CaseResult:
    """With one unary call per observation (no per-batch CPU figure: a call is not a batch)."""
    import grpc  # type: ignore[import-untyped]

    server = ServerProcess("grpc", "aioquic", quic.TransportSettings())
    observation = np.zeros(OBS_DIM, dtype=np.float32).tobytes()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.unary_unary(GRPC_METHOD)
            await call(observation)
            done = 0
            deadline = time.perf_counter() + seconds

            async def caller() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    await call(observation)
                    done += 1

            start = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(GRPC_CALLERS)))
            rate = done / (time.perf_counter() - start)
            pending: set[asyncio.Task[Any]] = set()

            def background() -> None:
                if len(pending) < GRPC_CALLERS:
                    task = asyncio.ensure_future(call(observation))
                    pending.add(task)
                    task.add_done_callback(pending.discard)

            async def one() -> float:
                start = time.perf_counter()
                await call(observation)
                return time.perf_counter() - start

            p50, p99 = await _probe_under_load(background, rate / 2, one)
            _, p99_10pct = await _probe_under_load(background, rate / 10, one)
            await asyncio.gather(*pending, return_exceptions=True)
        return CaseResult(rate, p50, p99, p99_10pct)
    finally:
        server.close()


def run() -> list[BenchResult]:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
    settings = quic.TransportSettings()
    cases: list[tuple[str, Callable[[], Coroutine[Any, Any, CaseResult]]]] = [
        ("edgeswarm", lambda: quic_case("gateway", quic.DEFAULT_STACK, settings)),
        ("aioquic_raw", lambda: quic_case("raw", "aioquic", settings)),
        ("qh3_raw", lambda: quic_case("raw", "qh3", settings)),
        ("grpc_unary", grpc_case),
    ]
    results: list[BenchResult] = []
    for case, measure in cases:
        try:
            measured = asyncio.run(measure())
        except Exception as error:  # one broken case must not hide the others
            print(f"transport/{case} failed: {error!r}", file=sys.stderr)
            continue
        results += measured.results(case)
    return results
