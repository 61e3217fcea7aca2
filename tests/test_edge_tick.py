"""The edge's tick loop serves its connection: ACKs are read while a tick computes, at
``--tick-hz 0`` a tick starts only a bounded lead ahead of the gateway's ACKs, and the
edge's ``--max-datagram-size`` reaches its QUIC connection."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeswarm.client.address import GatewayAddress
from edgeswarm.edge.config import EdgeConfig
from edgeswarm.edge.runner import UNACKED_TICKS_AHEAD, EdgeRunner

from .conftest import RunningGateway
from .test_edge_policies import edge_config as policies_edge_config
from .test_transport_packets import SizeLimitedRelay

pytestmark = pytest.mark.integration

SLOW_STAGE_S = 0.03
"""A stage that computes this long (a big world, a slow policy): the gateway, a process of
its own, commits and acknowledges the batches sent before it meanwhile."""


def edge_config(
    served: RunningGateway,
    tmp_path: Path,
    address: GatewayAddress | None = None,
    **overrides: object,
) -> EdgeConfig:
    """An edge of 1000 agents in batches of 250 for ``served`` (through ``address``)."""
    settings: dict[str, object] = {"edge_id": "tick-edge", "batch_agents": 250, **overrides}
    config = policies_edge_config(served, tmp_path, **settings)
    return config if address is None else dataclasses.replace(config, gateway=address)


def wrap(runner: EdgeRunner, stage: str, before: Callable[[], None]) -> None:
    """Call ``before()`` at the start of every call of ``runner.world.<stage>``."""
    real = getattr(runner.world, stage)

    def wrapped(*args: Any) -> Any:
        before()
        return real(*args)

    setattr(runner.world, stage, wrapped)


async def test_acks_are_read_between_the_stages_of_a_tick(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    """Before: the tick loop gave the event loop one turn per tick, so an ACK that arrived
    while a tick computed waited for the whole tick (ack latency grew with the tick's
    length: 90-120 ms at 100 000 agents). Now sends and ACKs are served between sense,
    step and apply: ACKs of batches sent before a slow stage are read within the tick."""
    runner = EdgeRunner(edge_config(gateway, tmp_path, duration_s=2.5, ticks=None))
    acked_at_sense: list[tuple[bool, int]] = []
    acked_at_apply: list[int] = []

    def slow_sense() -> None:
        uplink = runner.uplink
        acked_at_sense.append((uplink.connected, uplink.counters.acked_batches))
        time.sleep(SLOW_STAGE_S)  # stands for computing: the event loop is blocked

    wrap(runner, "sense", slow_sense)
    wrap(runner, "apply", lambda: acked_at_apply.append(runner.uplink.counters.acked_batches))
    summary = await runner.run()
    assert summary["observations_acked"] == summary["observations_sent"] > 0
    ticks = [
        (before, after)
        for (connected, before), after in zip(acked_at_sense, acked_at_apply, strict=True)
        if connected  # offline at the start the edge only spools
    ]
    assert len(ticks) >= 10, acked_at_sense
    within = [after > before for before, after in ticks]
    assert sum(within) >= len(within) // 4, ticks


async def test_as_fast_as_acknowledged_keeps_a_bounded_lead_over_the_acks(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    """``--tick-hz 0``: a tick starts only while at most UNACKED_TICKS_AHEAD ticks of
    batches wait for their ACK (before: the edge computed as fast as it could and the
    spool grew without bound while the gateway fell behind)."""
    # offline (before the session is up) the edge spools freely; count connected ticks only
    runner = EdgeRunner(edge_config(gateway, tmp_path, duration_s=3.0, ticks=None))
    per_tick = 1000 // 250
    spooled_at_tick: list[int] = []

    def record() -> None:
        if runner.uplink.connected:
            spooled_at_tick.append(len(runner.spool))

    wrap(runner, "sense", record)
    summary = await runner.run()
    assert summary["observations_acked"] == summary["observations_sent"] > 0
    assert len(spooled_at_tick) >= 20, spooled_at_tick
    assert max(spooled_at_tick) <= UNACKED_TICKS_AHEAD * per_tick, spooled_at_tick


async def relay_to(port: int, limit: int) -> tuple[SizeLimitedRelay, asyncio.DatagramTransport]:
    """A relay on 127.0.0.1 in front of ``port`` that drops datagrams above ``limit``."""
    relay = SizeLimitedRelay(("127.0.0.1", port), limit)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: relay, local_addr=("127.0.0.1", 0)
    )
    return relay, transport


async def test_the_edges_max_datagram_size_reaches_its_connection(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    """``edgeswarm edge --max-datagram-size 8192`` (``EdgeConfig.max_datagram_size``): the
    edge's packets grow to it where the path carries them; through a path that drops
    anything above 1400 bytes they settle just below that (qh3's probe steps: 1321) and
    everything is still delivered."""
    for limit, largest, settled in ((65_535, 8192, 8000), (1400, 1400, 1300)):
        relay, transport = await relay_to(gateway.port, limit)
        try:
            port = transport.get_extra_info("sockname")[1]
            address = GatewayAddress(port=port, ca_file=gateway.ca, stack="qh3")
            runner = EdgeRunner(
                edge_config(
                    gateway,
                    tmp_path / str(limit),
                    address,
                    edge_id=f"big-{limit}",
                    agents=20_000,
                    batch_agents=2048,
                    ticks=20,
                    max_datagram_size=8192,
                )
            )
            summary = await runner.run()
        finally:
            transport.close()
        assert summary["observations_acked"] == summary["observations_sent"] == 400_000
        assert max(relay.forwarded) <= largest
        assert relay.settled_above(settled), (limit, sorted(relay.forwarded.items())[-8:])
