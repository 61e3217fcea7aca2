"""A placement edge cut off from its gateway (a partition, not a crash) past the edge
timeout: its agents go on on the other edge, and no agent steps on two edges.

A real gateway (``--edge-timeout 2``: a lease of 1 s) and two real ``--placement``
edges; one reaches the gateway through a UDP relay (``edgeswarm.chaos.relay``) that
drops every datagram while the partition lasts. The cut-off edge loses its lease and
stops stepping; the gateway finds it DOWN and re-places its agents on the other edge
from their last checkpoints, past every tick the cut-off edge may have stepped. After
the heal the cut-off edge delivers its spool and steps only what it is assigned: in the
gateway's durable log no ``(agent, tick)`` comes twice.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from typing import Any

import numpy as np
import pytest

from edgeswarm.chaos.relay import UdpRelay

from .conftest import start_gateway, stop_process
from .test_placement_edges import (
    agents,
    checkpointed_by_owner,
    logged_steps,
    placed_edge,
    wait_rows,
)
from .test_placement_gateway import ask, wait_for_edges

pytestmark = pytest.mark.integration

AGENTS = 200
KEPT, CUT = "edge-kept", "edge-cut"


def summary(process: subprocess.Popen[str]) -> dict[str, Any]:
    process.terminate()
    out, err = process.communicate(timeout=60)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    found = [line for line in lines if line.get("event") == "summary"]
    assert found, err[-2000:]
    last: dict[str, Any] = found[-1]
    return last


def test_a_cut_off_edge_stops_stepping_and_no_agent_steps_on_two_edges(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    gateway = start_gateway(
        tmp_path_factory.mktemp("partition") / "gateway",
        "--edge-timeout", "2", "--idle-timeout", "3",
    )  # fmt: skip
    relay = UdpRelay(("127.0.0.1", gateway.port), delay_s=0.0, jitter_s=0.0)
    through_relay = dataclasses.replace(gateway, port=relay.address[1])
    edges: dict[str, subprocess.Popen[str]] = {}
    try:
        ask(gateway, "agents.add", {"first_id": 0, "count": AGENTS, "policy": "boids"})
        edges[KEPT] = placed_edge(gateway, KEPT)
        edges[CUT] = placed_edge(through_relay, CUT)
        wait_for_edges(gateway, {KEPT: "active", CUT: "active"})
        wait_rows(gateway, checkpointed_by_owner, "every agent checkpointed by its owner")

        relay.dropping = True  # the partition: nothing either way
        at_cut = agents(gateway)
        cut_off = [a for a, row in at_cut.items() if row["owner"] == CUT]
        assert cut_off
        wait_for_edges(gateway, {CUT: "down"}, timeout=60)
        resumed = wait_rows(
            gateway,
            lambda rows: checkpointed_by_owner(rows, after=at_cut),
            "the cut-off edge's agents checkpointed by the other edge, ticks going on",
        )
        assert {resumed[a]["owner"] for a in cut_off} == {KEPT}

        relay.dropping = False  # the heal: the cut-off edge comes back, takes a share again
        wait_for_edges(gateway, {CUT: "active"}, timeout=60)
        healed = wait_rows(
            gateway,
            lambda rows: (
                checkpointed_by_owner(rows, after=resumed)
                and any(row["owner"] == CUT for row in rows.values())
            ),
            "agents placed on the healed edge again, checkpointed by their owners",
        )
        assert {row["owner"] for row in healed.values()} == {KEPT, CUT}
        cut_summary = summary(edges.pop(CUT))  # delivers what it spooled
        kept_summary = summary(edges.pop(KEPT))
    finally:
        for process in edges.values():
            stop_process(process)
        relay.close()
        stop_process(gateway.process)
    assert "Traceback" not in gateway.log.read_text()
    stepped = logged_steps(gateway.data_dir, (KEPT, CUT))
    assert sorted(stepped) == list(range(AGENTS))
    twice = {a: len(t) - len(set(t)) for a, t in stepped.items() if len(set(t)) != len(t)}
    assert not twice, f"(agent, tick) stepped on both edges: {dict(list(twice.items())[:5])}"
    for agent_id in cut_off:
        ticks = stepped[agent_id]
        assert ticks[0] == 1
        # one gap at most: the ticks skipped across the partition (lease + staleness)
        assert int((np.diff(ticks) != 1).sum()) <= 1, f"agent {agent_id}: {ticks[:40]}"
    assert cut_summary["lease_expired"] >= 1  # it fenced itself while cut off
    assert kept_summary["lease_expired"] == 0
    assert cut_summary["dropped_batches"] == 0  # its spool kept everything
