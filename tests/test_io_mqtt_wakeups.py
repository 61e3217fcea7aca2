"""How many event-loop wake-ups a message and an action cost, on a real Mosquitto.

An edge that ticks when data arrives (``--tick-hz 0``) ticks once per wake-up of its
event loop that brought data: one message per wake-up made it tick every message or
two, and under load the ticks took the CPU the messages needed (``mqtt_loop`` in
``scripts/bench io``). These tests hold the event loop on purpose (the sensor and the
actuator are paho clients on their own threads) to count what one wake-up does.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import termios
import threading
import time
from collections.abc import Iterator

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.io import IoContext, IoMetrics
from edgeswarm.edge.io.mosquitto import Mosquitto
from edgeswarm.edge.io.mqtt import READ_BURST, MqttIO
from edgeswarm.edge.io.mqtt_address import parse_mqtt_address

pytestmark = pytest.mark.integration

PREFIX = "plant"
WAIT_S = 10.0


def _io(broker: Mosquitto, agents: int, query: str = "") -> MqttIO:
    options = parse_mqtt_address(f"mqtt://127.0.0.1:{broker.port}/{PREFIX}{query}", env={})
    context = IoContext(agents=agents, first_agent_id=0, obs_dim=8, act_dim=2, metrics=IoMetrics())
    return MqttIO(options, context)


@pytest.fixture
def paho_client(mosquitto: Mosquitto) -> Iterator[mqtt.Client]:
    """A threaded paho client, connected: it works while the test holds the event loop."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    assert connected.wait(WAIT_S), "no CONNACK from the test broker"
    try:
        yield client
    finally:
        client.loop_stop()
        client.disconnect()


def _bytes_waiting(io: MqttIO) -> int:
    assert io._paho is not None
    sock = io._paho.socket()
    assert sock is not None
    waiting = bytearray(4)
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, waiting)
    return int.from_bytes(waiting, "little")


async def test_one_wakeup_takes_a_burst_of_the_messages_waiting_in_the_socket(
    mosquitto: Mosquitto, paho_client: mqtt.Client
) -> None:
    agents = 3 * READ_BURST
    io = _io(mosquitto, agents)
    await io.start()
    try:
        async with asyncio.timeout(WAIT_S):
            await io.connected.wait()
        payloads = [
            (f"{PREFIX}/obs/{a}", json.dumps([a / agents] * 8).encode()) for a in range(agents)
        ]
        # held loop: every message waits in the edge's socket before it reads any
        for topic, payload in payloads:
            paho_client.publish(topic, payload).wait_for_publish(WAIT_S)
        size = sum(1 + 1 + 2 + len(t) + 1 + len(p) for t, p in payloads)  # MQTT 5 PUBLISH
        deadline = time.monotonic() + WAIT_S
        while _bytes_waiting(io) < size:  # the broker forwards on its own: poll, bounded
            assert time.monotonic() < deadline, "the broker did not forward the messages"
            time.sleep(0.001)

        await io.wait_data(WAIT_S)  # the first wake-up with data
        assert np.count_nonzero(io.inbox.take_updated()) >= READ_BURST

        taken = io.context.metrics.messages_in.labels("mqtt")
        deadline = time.monotonic() + WAIT_S
        while taken._value.get() < agents:  # the rest, a burst a wake-up; nothing lost
            assert time.monotonic() < deadline, "messages waiting in the socket were not read"
            await io.wait_data(0.1)
        assert io.inbox.observations[agents - 1, 0] == pytest.approx((agents - 1) / agents)
    finally:
        await io.close()


async def test_qos0_actions_leave_in_the_tick_that_made_them(
    mosquitto: Mosquitto, paho_client: mqtt.Client
) -> None:
    arrived = threading.Event()
    paho_client.on_message = lambda *args: arrived.set()
    subscribed = threading.Event()
    paho_client.on_subscribe = lambda *args: subscribed.set()
    paho_client.subscribe(f"{PREFIX}/act/#")
    assert subscribed.wait(WAIT_S), "no SUBACK"
    io = _io(mosquitto, 4, "?act=batch")
    table = AgentTable.create(count=4, obs_dim=8, state_dim=2, act_dim=2)
    await io.start()
    try:
        async with asyncio.timeout(WAIT_S):
            await io.connected.wait()
        io.receive(f"{PREFIX}/obs/2", json.dumps([0.5] * 8).encode(), time.monotonic())
        io.sense(table, table.fresh, time.monotonic())
        io.act(table, table.fresh)
        # the event loop stays held: the action is on the wire without another iteration
        assert arrived.wait(WAIT_S), "the tick's action waited for the event loop"
    finally:
        await io.close()
