"""The edge runner in this process against an in-process gateway (real QUIC): the
gateway's ACTIONS reach the agents, and stop() ends a run cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from edgeswarm.client import GatewayAddress
from edgeswarm.edge.config import EdgeConfig
from edgeswarm.edge.runner import EdgeRunner
from edgeswarm.wire import Actions, Role

from .gateway_harness import serving, wait_until
from .wasm_fixtures import policy_wat

pytestmark = pytest.mark.integration

FIRST_ID = 100
DT = 0.1
"""FlockingWorld's default tick length: an action a moves velocity by a * DT, once."""


async def test_gateway_actions_override_the_policies_then_stop_drains_and_says_bye(
    tmp_path: Path,
) -> None:
    still = tmp_path / "still.wat"  # writes no actions: velocities change only by the gateway's
    still.write_bytes(policy_wat(name="still"))
    async with serving(tmp_path / "gw") as gateway:
        assert gateway.ca_file is not None
        config = EdgeConfig(
            edge_id="edge-r",
            gateway=GatewayAddress(
                port=gateway.port, ca_file=gateway.ca_file, stack=gateway.config.stack
            ),
            data_dir=tmp_path / "edge",
            join_token=gateway.peers.issue_token(Role.EDGE),
            agents=6,
            first_agent_id=FIRST_ID,
            policies=(str(still),),
            tick_hz=50,
            batch_agents=4,
            metrics_port=None,
            progress_interval_s=0,
        )
        runner = EdgeRunner(config)
        world = runner.world  # --io sim (the default): the runner's own world
        assert world is not None
        velocities = world.velocities.copy()
        run = asyncio.create_task(runner.run())
        try:
            await wait_until(lambda: any(c.peer_id == "edge-r" for c in gateway.connections))
            [connection] = [c for c in gateway.connections if c.peer_id == "edge-r"]
            wide = Actions(tick=1, agent_ids=np.array([FIRST_ID + 2], np.uint32),
                           actions=np.ones((1, 3), np.float32))  # fmt: skip
            connection.send_actions(wide)  # 3 columns for 2-column agents: ignored
            connection.send_actions(
                Actions(
                    tick=1,
                    # two of this edge's agents, one past its last, one below its first
                    agent_ids=np.array([FIRST_ID, FIRST_ID + 1, FIRST_ID + 6, 5], np.uint32),
                    actions=np.array([[1.0, 0.0], [0.0, -2.0], [9, 9], [9, 9]], np.float32),
                )
            )
            await wait_until(lambda: runner.actions_applied == 2)
            ticks = runner.tick
            await wait_until(lambda: runner.tick >= ticks + 2)  # applied in a past tick
            runner.stop()
            async with asyncio.timeout(15):
                summary = await run
        finally:
            runner.stop()
            if not run.done():
                run.cancel()
        # the gateway saw the edge leave with BYE, everything acknowledged
        await wait_until(lambda: not gateway.stats.status(0.0).edges[0].connected)
        assert gateway.observation_log.high_water("edge-r") == summary["batches_sent"]
    change = world.velocities - velocities
    np.testing.assert_allclose(change[0], [1.0 * DT, 0.0], atol=1e-6)
    np.testing.assert_allclose(change[1], [0.0, -2.0 * DT], atol=1e-6)
    np.testing.assert_array_equal(change[2:], 0.0)  # no ACTIONS for them (or too wide)
    assert summary["actions_applied"] == 2
    assert summary["batches_acked"] == summary["batches_sent"] == 2 * summary["tick"]
    assert summary["in_flight"] == 0
    assert summary["connects"] == 1


def test_the_ack_timeout_reaches_the_uplink(tmp_path: Path) -> None:
    """``--ack-timeout`` is how soon an edge leaves a gateway that stopped acknowledging
    (its failover time): the config's value is the uplink's."""
    config = EdgeConfig(
        edge_id="edge-t",
        gateway=GatewayAddress(port=9, ca_file=tmp_path / "ca.crt"),
        data_dir=tmp_path / "edge",
        agents=2,
        ack_timeout_s=1.25,
        metrics_port=None,
    )
    runner = EdgeRunner(config)  # opened, never run: nothing is sent
    try:
        assert runner.uplink.ack_timeout_s == 1.25
    finally:
        runner.state.close()
        runner.spool.close()
