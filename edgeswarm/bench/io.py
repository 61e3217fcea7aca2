"""``scripts/bench io``: sensors over MQTT into the agent table, and the loop back.

Every case runs against one local Mosquitto (``edgeswarm.edge.io.mosquitto``)
with the sensor in a separate process (``io_peers``):

- ``mqtt_raw`` -> ``messages_per_s``: a bare aiomqtt subscriber counting
  per-agent messages as they arrive (the ceiling of a subscriber in this process);
- ``mqtt`` -> ``messages_per_s``: the same messages through our source
  (decoded into the inbox, copied into the agent table each tick);
- ``mqtt_batched`` -> ``observations_per_s``: batches of 10 000 observations
  (msgpack arrays) through our source;
- ``mqtt_loop`` -> ``p99_ms`` (and ``p50_ms``): sensor publish -> the agent's action
  received on the actuator topic, at half the rate ``mqtt`` measured (ticks follow the
  data, as an unpaced edge does; each tick's actions for the agents with a new reading
  go out as one ``act/batch`` message, so the loop's publishing does not double its
  per-message work; the step is the boids policy's numpy reference: the loop measures
  the I/O path, not the sandbox). p99 over every answered reading, from the oldest
  unanswered reading of its agent.

How ``mqtt_loop`` is measured, and why (issue 19, an instrumented stage split at
5 250 messages/s on the shared 2-core VM): the sensor and the actuator are two
processes, as they are two devices, stamping ``time.monotonic()`` (CLOCK_MONOTONIC,
one clock for the machine) and joined afterwards (``io_peers.loop_latencies``). One
paho client in one process used to publish through its network thread and receive
the actions: the GIL and that one thread delayed the actions' arrival stamps (broker
-> actuator p99 up to 119 ms; 3-4 ms with separate clients). The sensor writes each
message from its publishing thread (no network thread to wake per message). The rest
of the time was the product's (``edgeswarm.edge.io.mqtt``): publish -> the edge's
receive was p50 114-300 ms because aiomqtt parsed one message per event-loop
iteration, so the edge ticked every message or two and fell behind; the edge now
reads a burst of what the socket holds per wake-up, and writes QoS 0 actions from
the tick instead of through a task ~5 iterations later.

Rates are messages received over the time from the first to the last one received.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

from edgeswarm.bench import BenchResult
from edgeswarm.bench.io_peers import loop_latencies
from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.io import IoContext, IoMetrics, paho_publish
from edgeswarm.edge.io.mosquitto import INSTALL_HINT, Mosquitto, mosquitto_binary
from edgeswarm.edge.io.mqtt import MqttIO
from edgeswarm.edge.io.mqtt_address import parse_mqtt_address
from edgeswarm.edge.policy.boids import boids_numpy
from edgeswarm.heap import freeze_startup_objects

PREFIX = "bench"
AGENT_MESSAGES = 100_000
AGENTS = 1000
BATCH_AGENTS = 10_000
BATCHES = 200
LOOP_AGENTS = 1000
LOOP_SECONDS = 5.0
TICK_S = 0.1
LOOP_DRAIN_S = 0.2
"""After the sensor's last reading, the edge keeps ticking this long for its actions."""
IDLE_S = 2.0
"""A count stops this long after the last message (QoS 0 may drop under overload)."""


def _peer(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgeswarm.bench.io_peers", *args],
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish(peer: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = peer.communicate(timeout=120)
    if peer.returncode != 0:
        raise RuntimeError(f"bench peer failed (exit {peer.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


async def _raw(port: int) -> float:
    """Messages/s a bare client takes: counted in its receive callback (the way our source
    takes them, without decoding), so the ratio is our source's own cost; with paho's
    PUBLISH decoding as our source has it (``paho_publish``), for the same reason."""
    paho_publish.install()
    count, first, last = 0, 0.0, 0.0
    arrived = asyncio.Event()

    class CountingQueue(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            nonlocal count, first, last
            last = time.monotonic()
            if count == 0:
                first = last
            count += 1
            arrived.set()

    # MQTT 5, as our source: the protocol's own cost (properties) is in the ceiling too
    async with aiomqtt.Client(
        "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, queue_type=CountingQueue
    ) as client:
        await client.subscribe(f"{PREFIX}/obs/#")
        peer = _peer("publish", str(port), PREFIX, "agent", str(AGENT_MESSAGES), str(AGENTS))
        while count < AGENT_MESSAGES:
            arrived.clear()
            try:
                async with asyncio.timeout(IDLE_S if count else 30.0):
                    await arrived.wait()
            except TimeoutError:
                break  # the rest was dropped (QoS 0 under overload)
    await asyncio.to_thread(_finish, peer)
    return count / (last - first) if last > first else 0.0


def _io(port: int, agents: int, query: str = "") -> MqttIO:
    options = parse_mqtt_address(f"mqtt://127.0.0.1:{port}/{PREFIX}{query}", env={})
    context = IoContext(agents=agents, first_agent_id=0, obs_dim=8, act_dim=2, metrics=IoMetrics())
    return MqttIO(options, context)


async def _through_source(port: int, mode: str, total: int, agents: int) -> tuple[float, float]:
    """(messages/s, observations/s) through MqttIO, sensed into a table at the edge's
    default 10 ticks per second."""
    io = _io(port, agents)
    table = AgentTable.create(count=agents, obs_dim=8, state_dim=2, act_dim=2)
    await io.start()
    try:
        async with asyncio.timeout(30):
            await io.connected.wait()
        messages = io.context.metrics.messages_in.labels("mqtt")
        observations = io.context.metrics.observations_in.labels("mqtt")
        peer = _peer("publish", str(port), PREFIX, mode, str(total), str(agents))
        deadline = time.monotonic() + 120.0
        while messages._value.get() < total and time.monotonic() < deadline:
            await asyncio.sleep(TICK_S)  # the edge's tick period
            io.sense(table, table.fresh, time.monotonic())
            if io.first_message_at is not None and time.monotonic() - io.last_message_at > IDLE_S:
                break  # the rest was dropped (QoS 0 under overload)
        await asyncio.to_thread(_finish, peer)
        count, observed = messages._value.get(), observations._value.get()
        span = io.last_message_at - (io.first_message_at or io.last_message_at)
    finally:
        await io.close()
    return (count / span, observed / span) if span > 0 else (0.0, 0.0)


async def _loop(port: int, rate: float) -> tuple[float, float]:
    """(p50, p99) ms of sensor publish -> action received, at ``rate`` messages/s."""
    io = _io(port, LOOP_AGENTS, "?publish=updated&act=batch")
    table = AgentTable.create(count=LOOP_AGENTS, obs_dim=8, state_dim=2, act_dim=2)
    await io.start()
    freeze_startup_objects("bench")  # as `edgeswarm edge` does once set up
    actuator = subprocess.Popen(
        [sys.executable, "-m", "edgeswarm.bench.io_peers", "actuator", str(port), PREFIX],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        async with asyncio.timeout(30):
            await io.connected.wait()
        assert actuator.stdout is not None
        if await asyncio.to_thread(actuator.stdout.readline) != "subscribed\n":
            raise RuntimeError("bench actuator did not subscribe")
        sensor = _peer("sensor", str(port), PREFIX, str(LOOP_AGENTS), str(rate), str(LOOP_SECONDS))
        ended = asyncio.Event()
        finishing = asyncio.create_task(asyncio.to_thread(_finish, sensor))  # reads its stdout
        finishing.add_done_callback(lambda _: ended.set())
        while not ended.is_set():  # an unpaced edge: tick when data arrived
            await io.wait_data(0.1)
            io.sense(table, table.fresh, time.monotonic())
            boids_numpy(table.observations, table.state, table.actions)
            io.act(table, table.fresh)
            await asyncio.sleep(0)  # let the publisher task hand the actions over
        published = await finishing
        deadline = time.monotonic() + LOOP_DRAIN_S  # the last actions' way back
        while time.monotonic() < deadline:
            await io.wait_data(deadline - time.monotonic())
            io.sense(table, table.fresh, time.monotonic())
            boids_numpy(table.observations, table.state, table.actions)
            io.act(table, table.fresh)
            await asyncio.sleep(0)
        out, _ = await asyncio.to_thread(actuator.communicate, "", 30)
    finally:
        if actuator.poll() is None:
            actuator.kill()
            actuator.wait()
        await io.close()
    arrivals = json.loads(out.strip().splitlines()[-1])["arrivals"]
    ms = loop_latencies(published["published"], LOOP_AGENTS, arrivals) * 1e3
    if ms.size == 0:
        raise RuntimeError("mqtt_loop: no observation was answered")
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


async def _run(port: int) -> list[BenchResult]:
    raw = await _raw(port)
    single, _ = await _through_source(port, "agent", AGENT_MESSAGES, AGENTS)
    _, batched = await _through_source(port, "batch", BATCHES, BATCH_AGENTS)
    p50, p99 = await _loop(port, single / 2)
    return [
        BenchResult("io", "mqtt_raw", "messages_per_s", raw, "messages/s"),
        BenchResult("io", "mqtt", "messages_per_s", single, "messages/s"),
        BenchResult("io", "mqtt_batched", "observations_per_s", batched, "observations/s"),
        BenchResult("io", "mqtt_loop", "p99_ms", p99, "ms"),
        BenchResult("io", "mqtt_loop", "p50_ms", p50, "ms"),
    ]


def run() -> list[BenchResult]:
    binary = mosquitto_binary()
    if binary is None:
        raise SystemExit(f"scripts/bench io needs a Mosquitto broker: {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="edgeswarm-bench-io-") as work:
        broker = Mosquitto(binary, Path(work))
        broker.start()
        try:
            return asyncio.run(_run(broker.port))
        finally:
            broker.stop()


if __name__ == "__main__":
    for result in run():
        print(result)
