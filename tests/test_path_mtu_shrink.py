"""A path that stops carrying large datagrams in the middle of a session.

An edge and a gateway with ``--max-datagram-size 8192`` (qh3 probes the path up to
it) through a UDP relay (``edgeswarm.chaos.relay``) that carries any size, then only
datagrams of at most 1 400 bytes (a route change, a tunnel). qh3 2.1.0 does not take
the lost full-size packets for a black hole once the path was confirmed: the session
stalls. The edge's ACK timeout (``--ack-timeout``) takes the gateway as gone and
reconnects; the new connection probes from the safe size up and settles below the
limit. Nothing spooled is lost: every observation ends acknowledged and stored once.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from edgeswarm.chaos.relay import UdpRelay
from edgeswarm.transport.quic import default_stack

from .conftest import start_gateway, stop_process
from .test_edge_identity import stored_observations
from .test_integration import run_edge, summary_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        default_stack() == "aioquic",
        reason="aioquic has no path MTU discovery: it sends --max-datagram-size from the"
        " first packet, so a path that carries less never carries the session",
    ),
]

AGENTS = 4000
TICKS = 120
EDGE = "edge-mtu"


def test_an_edge_whose_path_stops_carrying_large_datagrams_reconnects_and_loses_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    gateway = start_gateway(
        tmp_path_factory.mktemp("mtu") / "gateway", "--max-datagram-size", "8192"
    )
    relay = UdpRelay(("127.0.0.1", gateway.port), delay_s=0.0, jitter_s=0.0)
    through_relay = dataclasses.replace(gateway, port=relay.address[1])
    edge = None
    try:
        edge = run_edge(
            through_relay,
            EDGE,
            agents=AGENTS,
            ticks=TICKS,
            tick_hz=10,
            batch_agents=AGENTS,
            extra=("--max-datagram-size", "8192", "--ack-timeout", "2"),
        )
        deadline = time.monotonic() + 30
        while relay.relayed < 200 and time.monotonic() < deadline:  # bounded
            time.sleep(0.1)
        assert relay.relayed >= 200, "the edge never got going"
        time.sleep(2)  # the session's path probed up to large datagrams by now
        relay.max_datagram_bytes = 1400
        summary = summary_of(edge, timeout=120)
        edge = None
    finally:
        if edge is not None:
            stop_process(edge)
        relay.close()
        stop_process(gateway.process)
    assert relay.dropped_large > 0, "no large datagram was sent after the path shrank"
    assert summary["connects"] >= 2, summary  # the stalled session was given up
    assert summary["batches_resent"] > 0, summary
    assert summary["observations_acked"] == TICKS * AGENTS, summary
    assert stored_observations(gateway.data_dir, EDGE) == TICKS * AGENTS
