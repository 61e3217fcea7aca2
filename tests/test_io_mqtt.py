"""An edge fed by sensors over a real Mosquitto broker, its actions on actuator topics.

Each test starts Mosquitto on 127.0.0.1 (``mosquitto`` fixture) and a gateway, runs
an edge in this process with ``--io mqtt://...`` (unpaced: it ticks when sensor
data arrives), publishes as a sensor and subscribes as an actuator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import msgpack  # type: ignore[import-untyped]
import numpy as np
import pytest

from edgeswarm.edge.io.mosquitto import Mosquitto
from edgeswarm.edge.io.mqtt import MqttIO
from edgeswarm.edge.io.mqtt_codec import encode_observation_batch
from edgeswarm.edge.policy.boids import boids_numpy
from edgeswarm.edge.runner import EdgeRunner

from .conftest import RunningGateway
from .mqtt_policies import MASK_ECHO
from .test_edge_policies import edge_config

pytestmark = pytest.mark.integration

WAIT_S = 20.0
PREFIX = "plant"


class Actuator:
    """Subscribes to PREFIX/act/# and keeps every action per agent."""

    def __init__(self) -> None:
        self.actions: dict[int, list[tuple[int, list[float]]]] = defaultdict(list)
        self.arrived = asyncio.Condition()

    async def run(self, broker: Mosquitto) -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe(f"{PREFIX}/act/#")
            self.subscribed.set()
            async for message in client.messages:
                agent = int(str(message.topic).rsplit("/", 1)[1])
                body = json.loads(message.payload)
                async with self.arrived:
                    self.actions[agent].append((body["tick"], body["act"]))
                    self.arrived.notify_all()

    subscribed: asyncio.Event

    async def wait_for(self, predicate: Any, what: str) -> None:
        async with asyncio.timeout(WAIT_S):
            async with self.arrived:
                await self.arrived.wait_for(lambda: predicate(self.actions))


@contextlib.asynccontextmanager
async def running(runner: EdgeRunner, broker: Mosquitto) -> AsyncIterator[tuple[Actuator, MqttIO]]:
    actuator = Actuator()
    actuator.subscribed = asyncio.Event()
    listening = asyncio.create_task(actuator.run(broker))
    edge = asyncio.create_task(runner.run())
    io = runner.io.source
    assert isinstance(io, MqttIO)
    try:
        async with asyncio.timeout(WAIT_S):
            await actuator.subscribed.wait()
            await io.connected.wait()
        yield actuator, io
    finally:
        runner.stop()
        async with asyncio.timeout(WAIT_S):
            await edge
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await listening


def mqtt_runner(
    gateway: RunningGateway, broker: Mosquitto, tmp_path: Path, **kw: Any
) -> EdgeRunner:
    settings: dict[str, Any] = {
        "io": f"{broker.url}/{PREFIX}",
        "ticks": None,
        "duration_s": 120.0,  # a bound; the tests stop the edge themselves
        "tick_hz": 0,
        **kw,
    }
    return EdgeRunner(edge_config(gateway, tmp_path, **settings))


def sample(agents: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.uniform(-1.0, 1.0, (agents, 8)).astype(np.float32)


def metric(runner: EdgeRunner, name: str, **labels: str) -> float:
    return runner.metrics.registry.get_sample_value(name, {"io": "mqtt", **labels}) or 0.0


async def test_sensor_observations_reach_the_policy_and_actions_equal_the_reference(
    gateway: RunningGateway, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    agents = 16
    obs = sample(agents)
    runner = mqtt_runner(gateway, mosquitto, tmp_path, agents=agents, batch_agents=16)
    async with (
        running(runner, mosquitto) as (actuator, _io),
        aiomqtt.Client("127.0.0.1", mosquitto.port) as sensor,
    ):
        ids = np.arange(8, dtype=np.uint32)
        await sensor.publish(f"{PREFIX}/obs/batch", encode_observation_batch(ids, obs[:8]))
        for agent in range(8, 12):  # JSON, one agent per message
            body = json.dumps({"obs": obs[agent].tolist(), "reward": 0.5})
            await sensor.publish(f"{PREFIX}/obs/{agent}", body)
        for agent in range(12, 16):  # msgpack, a bare list
            await sensor.publish(f"{PREFIX}/obs/{agent}", msgpack.packb(obs[agent].tolist()))
        await actuator.wait_for(
            lambda acts: all(len(acts[a]) >= 2 for a in range(agents)), "two actions each"
        )
    # every agent's state was zero until its first observation (zero observations
    # before it leave boids' state at zero), so its first two actions are:
    state = np.zeros((agents, 2), dtype=np.float32)
    first = np.empty((agents, 2), dtype=np.float32)
    second = np.empty((agents, 2), dtype=np.float32)
    boids_numpy(obs.copy(), state, first)
    boids_numpy(obs.copy(), state, second)
    for agent in range(agents):
        (t1, a1), (t2, a2) = actuator.actions[agent][:2]
        assert t2 == t1 + 1
        np.testing.assert_allclose(np.array(a1, np.float32), first[agent], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(np.array(a2, np.float32), second[agent], rtol=1e-6, atol=1e-7)
    assert metric(runner, "edgeswarm_edge_io_messages_in_total") == 9
    assert metric(runner, "edgeswarm_edge_io_observations_in_total") == 16
    assert metric(runner, "edgeswarm_edge_io_messages_out_total") >= 32


async def test_a_silent_sensor_is_masked_for_the_policy_and_its_actions_not_published(
    gateway: RunningGateway, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    policy = tmp_path / "mask_echo.wat"
    policy.write_bytes(MASK_ECHO)
    runner = mqtt_runner(
        gateway, mosquitto, tmp_path, agents=4, policies=(str(policy),), obs_max_age_s=0.3
    )
    async with (
        running(runner, mosquitto) as (actuator, _io),
        aiomqtt.Client("127.0.0.1", mosquitto.port) as sensor,
    ):
        for agent in range(4):
            await sensor.publish(f"{PREFIX}/obs/{agent}", json.dumps([agent + 1.0] + [0.0] * 7))
        # the policy saw the mask (1: fresh) as its ninth observation column
        await actuator.wait_for(
            lambda acts: all(acts[a] and acts[a][-1][1] == [1.0, a + 1.0] for a in range(4)),
            "fresh actions",
        )

        # sensors 2 and 3 fall silent; 0 and 1 keep reporting
        async def stale() -> bool:
            return bool(runner.table.fresh.tolist() == [1, 1, 0, 0])

        async with asyncio.timeout(WAIT_S):
            while not await stale():
                for agent in (0, 1):
                    await sensor.publish(
                        f"{PREFIX}/obs/{agent}", json.dumps([agent + 1.0] + [0.0] * 7)
                    )
                await actuator.wait_for(lambda acts: True, "")
                await asyncio.sleep(0.05)  # the sensors' own period
        stale_from = runner.tick  # this tick sensed them stale (payload ticks count the same)
        seen = len(actuator.actions[0])
        for _ in range(3):
            await sensor.publish(f"{PREFIX}/obs/0", json.dumps([1.0] + [0.0] * 7))
            await sensor.publish(f"{PREFIX}/obs/1", json.dumps([2.0] + [0.0] * 7))
        await actuator.wait_for(lambda acts: len(acts[0]) >= seen + 3, "more actions")
        # actions reach the actuator in the order published: agent 0's later ones came, so
        # any of the silent agents' would have; none was published once they were stale
        assert all(tick < stale_from for a in (2, 3) for tick, _ in actuator.actions[a])
        assert actuator.actions[0][-1][0] >= stale_from
        assert runner.table.actions[2:, 0].tolist() == [0.0, 0.0]  # the policy saw mask 0
        assert runner.table.actions[2:, 1].tolist() == [3.0, 4.0]  # and the held observation
    assert metric(runner, "edgeswarm_edge_io_stale_agent_ticks_total") > 0


async def test_malformed_payloads_are_counted_and_logged_and_the_broker_restart_recovers(
    gateway: RunningGateway,
    mosquitto: Mosquitto,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="edgeswarm.edge.io.mqtt")
    runner = mqtt_runner(gateway, mosquitto, tmp_path, agents=4)
    async with running(runner, mosquitto) as (actuator, io):
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sensor:
            for topic, payload in (
                ("obs/1", b"\xc1\xc1"),
                ("obs/1", b"{not json"),
                ("obs/1", b"[1, 2, 3]"),
                ("obs/batch", b"\x93\x01\x02\x03"),
                ("obs/99", json.dumps([0.0] * 8).encode()),
                ("obs/pump", json.dumps([0.0] * 8).encode()),
            ):
                await sensor.publish(f"{PREFIX}/{topic}", payload)
            await sensor.publish(f"{PREFIX}/obs/2", json.dumps([0.5] * 8))
            await actuator.wait_for(lambda acts: bool(acts[2]), "an action for agent 2")
        for reason, count in (("decode", 3), ("shape", 1), ("agent", 1), ("topic", 1)):
            assert (
                metric(runner, "edgeswarm_edge_io_malformed_messages_total", reason=reason) == count
            )
        assert "malformed MQTT message dropped" in caplog.text
        assert not actuator.actions[1]  # nothing came of the malformed messages

        mosquitto.stop()  # the broker goes away mid-run ...
        async with asyncio.timeout(WAIT_S):
            while io.connected.is_set():
                await asyncio.sleep(0.01)
        tick_at_outage = runner.tick
        async with asyncio.timeout(WAIT_S):  # the edge keeps ticking without its broker
            while runner.tick <= tick_at_outage:
                await asyncio.sleep(0.01)
        assert not io.connected.is_set()
        mosquitto.start()  # ... and comes back on the same port
        async with asyncio.timeout(WAIT_S):
            await io.connected.wait()
        assert metric(runner, "edgeswarm_edge_io_reconnects_total") >= 1
        late = Actuator()
        late.subscribed = asyncio.Event()
        listening = asyncio.create_task(late.run(mosquitto))
        try:
            async with asyncio.timeout(WAIT_S):
                await late.subscribed.wait()
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sensor:
                await sensor.publish(f"{PREFIX}/obs/3", json.dumps([0.25] * 8))
            await late.wait_for(lambda acts: bool(acts[3]), "an action after the restart")
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await listening


async def test_tls_and_a_password_protected_broker(tmp_path: Path) -> None:
    import shutil
    import ssl
    import subprocess

    from edgeswarm.edge.agent_table import AgentTable
    from edgeswarm.edge.io import IoContext, IoMetrics
    from edgeswarm.edge.io.mosquitto import mosquitto_binary
    from edgeswarm.edge.io.mqtt_address import PASSWORD_ENV, parse_mqtt_address
    from edgeswarm.transport.tls import create_certificates

    binary, passwd = mosquitto_binary(), shutil.which("mosquitto_passwd")
    if binary is None or passwd is None:
        pytest.skip("mosquitto is not installed (scripts/test installs the Debian package)")
    certs = create_certificates(tmp_path / "tls", names=("127.0.0.1",))
    users = tmp_path / "passwords"
    subprocess.run([passwd, "-c", "-b", str(users), "edge", "s3cret"], check=True)
    broker = Mosquitto(
        binary, tmp_path, certfile=certs.cert, keyfile=certs.key, password_file=users
    )
    broker.start()
    tls = ssl.create_default_context(cafile=str(certs.ca))
    try:
        with pytest.raises(aiomqtt.MqttError):  # anonymous: refused
            async with aiomqtt.Client("127.0.0.1", broker.port, tls_context=tls):
                pass
        options = parse_mqtt_address(
            f"mqtts://edge@127.0.0.1:{broker.port}/p?ca={certs.ca}&qos_obs=1&qos_act=1",
            env={PASSWORD_ENV: "s3cret"},
        )
        context = IoContext(agents=2, first_agent_id=0, obs_dim=8, act_dim=2, metrics=IoMetrics())
        io = MqttIO(options, context)
        await io.start()
        try:
            async with asyncio.timeout(WAIT_S):
                await io.connected.wait()
            async with aiomqtt.Client(
                "127.0.0.1", broker.port, username="edge", password="s3cret", tls_context=tls
            ) as sensor:
                await sensor.publish("p/obs/1", json.dumps([0.5] * 8))
                async with asyncio.timeout(WAIT_S):
                    await io.data.wait()
            table = AgentTable.create(count=2, obs_dim=8, state_dim=2, act_dim=2)
            io.sense(table, table.fresh, 0.0)
            assert table.fresh.tolist() == [0, 1]
            assert table.observations[1].tolist() == [0.5] * 8
        finally:
            await io.close()
    finally:
        broker.stop()


async def test_the_sensor_simulator_publishes_the_world_and_applies_batched_actions(
    mosquitto: Mosquitto,
) -> None:
    from edgeswarm.edge.agent_table import AgentTable
    from edgeswarm.edge.io import IoContext, IoMetrics
    from edgeswarm.edge.io.mqtt_address import parse_mqtt_address
    from edgeswarm.edge.io.sensor_sim import simulate

    options = parse_mqtt_address(f"{mosquitto.url}/sim?act=batch", env={})
    context = IoContext(agents=50, first_agent_id=100, obs_dim=8, act_dim=2, metrics=IoMetrics())
    io = MqttIO(options, context)
    table = AgentTable.create(count=50, obs_dim=8, state_dim=2, act_dim=2, first_id=100)
    await io.start()
    try:
        async with asyncio.timeout(WAIT_S):
            await io.connected.wait()
        sensors = asyncio.create_task(
            simulate("127.0.0.1", mosquitto.port, "sim", 50, 100, hz=20.0, duration=1.0)
        )
        while not sensors.done():  # the edge's side: a tick on every batch
            await io.wait_data(0.1)
            io.sense(table, table.fresh, 0.0)
            table.actions[:] = 0.5
            io.act(table, table.fresh)
        result = await sensors
    finally:
        await io.close()
    assert result["ticks"] >= 10
    assert table.fresh.all()  # every agent's reading came in a batch
    assert result["actions_applied"] >= 50  # and the actions went back to the world


async def test_the_sensor_simulator_reconnects_when_the_broker_restarts(
    mosquitto: Mosquitto,
) -> None:
    """Found by scripts/chaos mqtt_broker_restart: the simulator died with MqttCodeError
    ("not currently connected") when the broker restarted; a device reconnects."""
    from edgeswarm.edge.io.sensor_sim import simulate

    published = asyncio.Event()

    async def watch() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.subscribe("restart/obs/batch")
            async for _ in client.messages:
                published.set()

    async def ticks_again() -> None:
        """Restart the broker once readings flow, then wait for readings again."""
        async with asyncio.timeout(WAIT_S):
            watching = asyncio.create_task(watch())
            await published.wait()
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await watching
            mosquitto.stop()
            await asyncio.sleep(0.5)  # the broker is away for half a second
            mosquitto.start()
            published.clear()
            watching = asyncio.create_task(watch())
            await published.wait()
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await watching

    sensors = asyncio.create_task(
        simulate("127.0.0.1", mosquitto.port, "restart", 20, 0, hz=20.0, duration=4.0)
    )
    await ticks_again()  # readings flow again after the restart
    result = await asyncio.wait_for(sensors, WAIT_S)
    assert result["reconnects"] >= 1
    assert result["ticks"] >= 40  # most of 4 s at 20 Hz: it did not stop at the restart
