"""The sensors and actuators of ``scripts/bench io``, run as a separate process.

``python -m edgeswarm.bench.io_peers publish PORT PREFIX MODE COUNT AGENTS``
publishes ``COUNT`` observation messages (``agent``: one JSON message per agent
on ``PREFIX/obs/<id>``; ``batch``: msgpack batches of ``AGENTS`` observations on
``PREFIX/obs/batch``) as fast as the client goes, then prints one JSON line.

``python -m edgeswarm.bench.io_peers loop PORT PREFIX AGENTS RATE SECONDS``
publishes per-agent observations at ``RATE`` messages/s (round robin over
``AGENTS``) for ``SECONDS`` while subscribed to ``PREFIX/act/#`` (the edge
publishes each tick's actions as one ``act/batch`` message), and prints the
latency from each observation's publish to the first action for its agent
after it (from the oldest unanswered observation of that agent; CLOCK_MONOTONIC,
shared by processes).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque

import msgpack  # type: ignore[import-untyped]
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgeswarm.edge.io.mqtt_codec import encode_observation_batch

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


def loop(port: int, prefix: str, agents: int, rate: float, seconds: float) -> dict[str, float]:
    pending: list[deque[float]] = [deque() for _ in range(agents)]
    latencies: list[float] = []
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        body = msgpack.unpackb(message.payload)  # PREFIX/act/batch: the tick's actions
        agents = np.frombuffer(body["agent_ids"]["data"], dtype="<u4").tolist()
        with lock:
            for agent in agents:
                waiting = pending[agent]
                if waiting:
                    latencies.append(now - waiting[0])
                    waiting.clear()

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
    payloads = _sample_payloads(agents)
    topics = [f"{prefix}/obs/{agent}" for agent in range(agents)]
    period = 1.0 / rate
    started = time.monotonic()
    sent = 0
    while (now := time.monotonic()) - started < seconds:
        due = int((now - started) / period) + 1
        while sent < due:
            agent = sent % agents
            with lock:
                pending[agent].append(time.monotonic())
            client.publish(topics[agent], payloads[agent])
            sent += 1
        time.sleep(max(0.0, started + sent * period - time.monotonic()))
    time.sleep(0.2)  # the last actions' way back (bounded; answered ones are counted)
    client.loop_stop()
    client.disconnect()
    ms = np.array(latencies) * 1e3
    return {
        "sent": sent,
        "answered": len(latencies),
        "p50_ms": float(np.percentile(ms, 50)) if ms.size else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if ms.size else float("nan"),
    }


def main(argv: list[str]) -> None:
    command, port, prefix, *rest = argv
    if command == "publish":
        mode, count, agents = rest
        result = publish(int(port), prefix, mode, int(count), int(agents))
    else:
        agents, rate, seconds = rest
        result = loop(int(port), prefix, int(agents), float(rate), float(seconds))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
