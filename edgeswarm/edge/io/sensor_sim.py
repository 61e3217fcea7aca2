"""A small sensor simulator that speaks MQTT: the flocking world behind a broker.

``python -m edgeswarm.edge.io.sensor_sim --broker 127.0.0.1:1883 --prefix demo/e0
--agents 1000 --first-id 0 --hz 10 --duration 30`` steps a :class:`FlockingWorld`
and publishes every tick's observations as one batch on ``PREFIX/obs/batch``
(msgpack arrays, :mod:`.mqtt_codec`); it subscribes to ``PREFIX/act/batch`` and
applies the actions that came back (agents with none get no acceleration), so
an edge run with ``--io mqtt://BROKER/PREFIX?act=batch`` closes the loop
through a real broker. ``edgeswarm demo --io mqtt`` starts one per edge.
Prints one JSON line at the end (ticks, actions applied), also when stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time

import aiomqtt
import msgpack  # type: ignore[import-untyped]
import numpy as np

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.world import FlockingWorld
from edgeswarm.wire.arrays import decode_array
from edgeswarm.wire.errors import InvalidArray

from .mqtt_codec import encode_observation_batch

RECONNECT_DELAY_S = 0.2
"""Wait between attempts to reach the broker again after losing it."""


class _Run:
    """The simulator's world and counters, kept across broker connections."""

    def __init__(self, agents: int, first_id: int, seed: int) -> None:
        self.world = FlockingWorld(agents, seed=seed)
        self.table = AgentTable.create(
            count=agents, obs_dim=8, state_dim=2, act_dim=2, first_id=first_id
        )
        self.actions = np.zeros((agents, 2), dtype=np.float32)
        self.first_id, self.agents = first_id, agents
        self.applied = self.ticks = self.reconnects = 0

    def take(self, payload: object) -> None:
        try:
            body = msgpack.unpackb(payload)
            ids = decode_array(body["agent_ids"], dtype="<u4", ndim=1)
            acts = decode_array(body["actions"], dtype="<f4", ndim=2)
        except (ValueError, KeyError, TypeError, InvalidArray):
            return
        rows = ids.astype(np.int64) - self.first_id
        ok = (rows >= 0) & (rows < self.agents) & (acts.shape[1] == 2)
        self.actions[rows[ok]] = acts[ok]
        self.applied += int(ok.sum())


async def simulate(
    host: str, port: int, prefix: str, agents: int, first_id: int, hz: float, duration: float,
    seed: int = 0,
) -> dict[str, int]:  # fmt: skip
    """Publish the world for ``duration`` seconds at ``hz``. A broker that goes away
    (restarted, say) is reached again every RECONNECT_DELAY_S while the time lasts, as
    a device would; the world keeps its state and the count of reconnects is returned."""
    run = _Run(agents, first_id, seed)
    stop = asyncio.Event()  # SIGTERM (the demo stopping it) ends the run cleanly
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    period = 1.0 / hz
    started = time.monotonic()
    while time.monotonic() - started < duration and not stop.is_set():
        try:
            await _connected(run, host, port, prefix, period, started, duration, stop)
        except aiomqtt.MqttError:
            if time.monotonic() - started >= duration or stop.is_set():
                break
            run.reconnects += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RECONNECT_DELAY_S)
    return {"ticks": run.ticks, "actions_applied": run.applied, "reconnects": run.reconnects}


async def _connected(
    run: _Run, host: str, port: int, prefix: str, period: float, started: float,
    duration: float, stop: asyncio.Event,
) -> None:  # fmt: skip
    """One connection to the broker: publish ticks until the time is up or it fails."""
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(f"{prefix}/act/batch")

        async def take_actions() -> None:
            async for message in client.messages:
                run.take(message.payload)

        taking = asyncio.create_task(take_actions())
        table = run.table
        try:
            while time.monotonic() - started < duration and not stop.is_set():
                run.world.sense(table)
                await client.publish(
                    f"{prefix}/obs/batch",
                    encode_observation_batch(table.ids, table.observations, table.rewards),
                )
                run.world.apply(run.actions)
                run.actions.fill(0.0)
                run.ticks += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        stop.wait(), max(0.0, started + run.ticks * period - time.monotonic())
                    )
        finally:
            taking.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await taking


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m edgeswarm.edge.io.sensor_sim")
    parser.add_argument("--broker", default="127.0.0.1:1883", help="HOST:PORT of the broker")
    parser.add_argument("--prefix", required=True, help="topic prefix (the edge's --io PREFIX)")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--first-id", type=int, default=0)
    parser.add_argument("--hz", type=float, default=10.0, help="sensor readings per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    host, _, port = args.broker.rpartition(":")
    result = asyncio.run(
        simulate(host, int(port), args.prefix, args.agents, args.first_id, args.hz,
                 args.duration, args.seed)
    )  # fmt: skip
    print(json.dumps({"event": "summary", **result}), flush=True)


if __name__ == "__main__":
    main()
