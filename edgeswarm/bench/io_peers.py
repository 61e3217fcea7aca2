"""The sensors and actuators of ``scripts/bench io``, run as a separate process.

``python -m edgeswarm.bench.io_peers publish PORT PREFIX MODE COUNT AGENTS``
publishes ``COUNT`` observation messages (``agent``: one JSON message per agent
on ``PREFIX/obs/<id>``; ``batch``: msgpack batches of ``AGENTS`` observations on
``PREFIX/obs/batch``) as fast as the client goes, then prints one JSON line.

``mqtt_loop`` has two: a sensor and an actuator, separate processes as they are
separate devices (one process doing both made the actions' arrival wait for the
publishing loop: the GIL and paho's one network thread, shared by 9 000
publishes/s and the receiving). ``... sensor PORT PREFIX AGENTS RATE SECONDS``
publishes per-agent observations at ``RATE`` messages/s (round robin over
``AGENTS``) for ``SECONDS`` and prints when it published each;
``... actuator PORT PREFIX`` subscribes to ``PREFIX/act/#`` (the edge publishes
each tick's actions as one ``act/batch`` message), prints ``subscribed``, and when
its stdin closes prints when each action message arrived and for which agents.
Both stamp ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process on
the machine); :func:`loop_latencies` joins them afterwards.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import msgpack  # type: ignore[import-untyped]
import numpy as np
import paho.mqtt.client as mqtt
from numpy.typing import NDArray
from paho.mqtt.enums import CallbackAPIVersion

from edgeswarm.edge.io.mqtt_codec import encode_observation_batch
from edgeswarm.heap import freeze_startup_objects

_CONNECT_TIMEOUT_S = 10.0


def _client(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _sample_payloads(agents: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    obs = rng.uniform(-1, 1, (agents, 8)).astype(np.float32)
    return [json.dumps([round(float(x), 4) for x in row]).encode() for row in obs]


def publish(port: int, prefix: str, mode: str, count: int, agents: int) -> dict[str, float]:
    client = _client(port)
    started = time.monotonic()
    if mode == "agent":
        payloads = _sample_payloads(agents)
        topics = [f"{prefix}/obs/{agent}" for agent in range(agents)]
        for i in range(count):
            client.publish(topics[i % agents], payloads[i % agents])
    else:
        ids = np.arange(agents, dtype=np.uint32)
        obs = np.random.default_rng(1).uniform(-1, 1, (agents, 8)).astype(np.float32)
        payload = encode_observation_batch(ids, obs)
        for _ in range(count):
            client.publish(f"{prefix}/obs/batch", payload)
    seconds = time.monotonic() - started
    client.loop_stop()
    client.disconnect()
    return {"sent": count, "seconds": seconds}


def sensor(port: int, prefix: str, agents: int, rate: float, seconds: float) -> dict[str, Any]:
    """Publish per-agent observations at ``rate`` (round robin over ``agents``) for
    ``seconds``; returns when each was handed to the socket (``time.monotonic()``).

    No network thread: the client writes each message in the publishing thread, as a
    device's firmware does (a paho network thread beside a publishing loop costs a
    wake-up and a thread switch per message, and the GIL delays both)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    deadline = time.monotonic() + _CONNECT_TIMEOUT_S
    while not client.is_connected():  # CONNACK
        if time.monotonic() > deadline:
            raise SystemExit("sensor: no CONNACK")
        client.loop(0.1)
    payloads = _sample_payloads(agents)
    topics = [f"{prefix}/obs/{agent}" for agent in range(agents)]
    published: list[float] = []
    freeze_startup_objects("sensor")
    period = 1.0 / rate
    started = time.monotonic()
    sent = 0
    while (now := time.monotonic()) - started < seconds:
        due = int((now - started) / period) + 1
        while sent < due:
            agent = sent % agents
            published.append(time.monotonic())
            client.publish(topics[agent], payloads[agent])
            sent += 1
        client.loop_misc()  # keepalive
        time.sleep(max(0.0, started + sent * period - time.monotonic()))
    while client.want_write():  # anything the socket did not take at once
        client.loop_write()
    client.disconnect()
    return {"agents": agents, "published": published}


def actuator(port: int, prefix: str) -> dict[str, Any]:
    """Receive ``PREFIX/act/#`` (each tick's actions as one ``act/batch`` message) until
    stdin closes; prints ``subscribed`` once it receives, returns every message's arrival
    (``time.monotonic()``) and its agent ids."""
    arrivals: list[tuple[float, bytes]] = []  # ids as received: no int object per agent
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        body = msgpack.unpackb(message.payload)
        arrivals.append((now, body["agent_ids"]["data"]))

    def on_subscribe(*args: object) -> None:
        subscribed.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect("127.0.0.1", port)
    client.subscribe(f"{prefix}/act/#")
    client.loop_start()
    if not subscribed.wait(_CONNECT_TIMEOUT_S):
        raise SystemExit("actuator: no SUBACK")
    freeze_startup_objects("actuator")  # its collections would delay the stamps
    print("subscribed", flush=True)
    sys.stdin.read()  # until the bench closes it
    client.loop_stop()
    client.disconnect()
    return {"arrivals": [(at, np.frombuffer(ids, dtype="<u4").tolist()) for at, ids in arrivals]}


def loop_latencies(
    published: list[float], agents: int, arrivals: list[tuple[float, list[int]]]
) -> NDArray[np.float64]:
    """Seconds from each answered observation to the first action for its agent after it
    (from the agent's oldest unanswered observation), on one CLOCK_MONOTONIC timeline:
    the sensor's ``published`` (observation ``i`` is agent ``i % agents``'s) and the
    actuator's ``arrivals`` of action messages (arrival time, agent ids)."""
    events = [(t, i % agents, -1) for i, t in enumerate(published)]
    events += [(t, 0, j) for j, (t, _) in enumerate(arrivals)]
    events.sort()
    pending: list[float | None] = [None] * agents
    latencies: list[float] = []
    for t, agent, arrival in events:
        if arrival < 0:
            if pending[agent] is None:
                pending[agent] = t
            continue
        for answered in arrivals[arrival][1]:
            oldest = pending[answered]
            if oldest is not None:
                latencies.append(t - oldest)
                pending[answered] = None
    return np.array(latencies, dtype=np.float64)


def main(argv: list[str]) -> None:
    command, port, prefix, *rest = argv
    if command == "publish":
        mode, count, agents = rest
        result = publish(int(port), prefix, mode, int(count), int(agents))
    elif command == "sensor":
        agents, rate, seconds = rest
        result = sensor(int(port), prefix, int(agents), float(rate), float(seconds))
    else:
        result = actuator(int(port), prefix)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
