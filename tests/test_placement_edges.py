"""Edges run the agents a real gateway assigns, and checkpoint them (feature ``placement``).

A real gateway and three real edge processes started with ``--placement``: the
gateway's ASSIGN frames decide which agents each edge steps; every agent's last
checkpoint (CHECKPOINT frames, ``placement.db``) comes from its owner. A drain
moves agents and they go on from their checkpoints on their new owner; a
``kill -9`` makes an edge DOWN after ``--edge-timeout`` and its agents resume
from their last checkpoint elsewhere, their ticks never going back.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeswarm.gateway.log.reader import read_records
from edgeswarm.wire import ObservationBatch, decode_payload

from .conftest import RunningGateway, stop_process
from .test_integration import run_edge
from .test_placement_gateway import ask, placement_gateway, wait_for_edges

pytestmark = pytest.mark.integration

__all__ = ["placement_gateway"]  # the fixture, imported for this module's tests

AGENTS = 600
NAMES = ("edge-a", "edge-b", "edge-c")


def placed_edge(gateway: RunningGateway, name: str) -> subprocess.Popen[str]:
    return run_edge(
        gateway,
        name,
        agents=1,  # ignored with --placement
        ticks=1_000_000,
        tick_hz=20,
        extra=("--placement", "--checkpoint-interval", "5"),
    )


Rows = dict[int, dict[str, Any]]


def agents(gateway: RunningGateway) -> Rows:
    listed = ask(gateway, "agents.list", {"limit": AGENTS})
    return {row["agent_id"]: row for row in listed["agents"]}


def wait_rows(
    gateway: RunningGateway, holds: Callable[[Rows], bool], what: str, timeout: float = 60
) -> Rows:
    """Poll ``agents.list`` until ``holds`` (bounded in time)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = agents(gateway)
        if holds(rows):
            return rows
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.3)


def checkpointed_by_owner(rows: Rows, after: Rows | None = None) -> bool:
    """Every agent's last checkpoint came from its owner (and, given ``after``, is newer
    than the checkpoint it had then: it went on from there)."""
    for agent_id, row in rows.items():
        saved = row["checkpoint"]
        if row["owner"] is None or saved is None or saved["edge_id"] != row["owner"]:
            return False
        if after is not None and saved["tick"] <= after[agent_id]["checkpoint"]["tick"]:
            return False
    return True


def test_edges_run_the_assigned_agents_and_resume_moved_ones_from_checkpoints(
    placement_gateway: RunningGateway,
) -> None:
    gateway = placement_gateway
    ask(gateway, "agents.add", {"first_id": 0, "count": AGENTS, "policy": "boids"})
    edges = {name: placed_edge(gateway, name) for name in NAMES}
    try:
        wait_for_edges(gateway, dict.fromkeys(NAMES, "active"))
        settled = wait_rows(gateway, checkpointed_by_owner, "every agent checkpointed by its owner")
        owners = {row["owner"] for row in settled.values()}
        assert owners == set(NAMES)

        shown = ask(gateway, "agents.show", {"agent_id": 7})
        assert shown["checkpoint"]["tick"] > 0
        assert shown["checkpoint"]["edge_id"] == shown["owner"]

        before_drain = settled
        ask(gateway, "edges.drain", {"edge_id": "edge-b"})
        moved = [a for a, row in before_drain.items() if row["owner"] == "edge-b"]
        assert moved
        drained = wait_rows(
            gateway,
            lambda rows: checkpointed_by_owner(rows, after=before_drain),
            "drained agents checkpointed by their new owners, ticks going on",
        )
        assert all(drained[a]["owner"] in ("edge-a", "edge-c") for a in moved)

        edges["edge-c"].kill()  # kill -9: no BYE; DOWN after the idle and edge timeouts
        edges["edge-c"].wait()
        before_kill = agents(gateway)
        lost = [a for a, row in before_kill.items() if row["owner"] == "edge-c"]
        assert lost
        wait_for_edges(gateway, {"edge-c": "down"}, timeout=60)
        resumed = wait_rows(
            gateway,
            lambda rows: checkpointed_by_owner(rows, after=before_kill),
            "the killed edge's agents checkpointed by edge-a, ticks going on",
        )
        assert {resumed[a]["owner"] for a in lost} == {"edge-a"}

        url = f"http://127.0.0.1:{gateway.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        assert "edgeswarm_placement_checkpoint_age_seconds" in text
        assert "edgeswarm_placement_checkpoint_file_wal_checkpoints_total" in text
        assert "edgeswarm_placement_assign_frames_total" in text
        count = "edgeswarm_placement_handover_seconds_count "
        handovers = [row for row in text.splitlines() if row.startswith(count)]
        assert handovers
        assert float(handovers[0].split()[-1]) >= 1  # the drain's, at least
    finally:
        for process in edges.values():
            stop_process(process)  # the live ones deliver what they spooled
    assert stop_process(gateway.process) == 0
    assert "Traceback" not in gateway.log.read_text()  # e.g. a refresh after placement.db closed
    stepped = logged_steps(gateway.data_dir)
    # staleness: the killed edge's agents lost the state of the ticks logged after their
    # last checkpoint (docs/operations.md); checkpoints go every 5 ticks
    on_c = logged_steps(gateway.data_dir, ("edge-c",))
    lost_ticks = [on_c[a][-1] - before_kill[a]["checkpoint"]["tick"] for a in lost]
    print(f"staleness: max {max(lost_ticks)} ticks, mean {np.mean(lost_ticks):.1f}")
    assert max(lost_ticks) <= 3 * 5
    assert sorted(stepped) == list(range(AGENTS))
    for agent_id, ticks in stepped.items():
        # every (agent, tick) at most once: moves and the failure resumed each agent
        # after its last logged tick and its checkpoint, whichever is later
        assert len(set(ticks)) == len(ticks), f"agent {agent_id} stepped a tick twice"
        gaps = int((np.diff(ticks) != 1).sum())
        # none skipped on live moves; across the failure, the ticks the killed edge
        # stepped after its last batch reached the gateway were never logged
        assert ticks[0] == 1
        assert gaps <= (1 if agent_id in lost else 0), f"agent {agent_id}: {ticks[:40]}"


def logged_steps(data_dir: Path, names: tuple[str, ...] = NAMES) -> dict[int, list[int]]:
    """Per agent, the ticks of its observations from ``names`` in the durable log, sorted."""
    log = data_dir / "observations.db"
    segments = log.with_name(log.name + "-segments")
    pairs = []
    for edge_id in names:
        for record in read_records(log, segments, edge_id):
            batch = decode_payload(record.payload)
            assert isinstance(batch, ObservationBatch)
            pairs.append(np.stack([batch.agent_ids, np.full(batch.count, batch.tick)], axis=1))
    table = np.concatenate(pairs).astype(np.int64)
    order = np.lexsort((table[:, 1], table[:, 0]))
    table = table[order]
    agents, starts = np.unique(table[:, 0], return_index=True)
    return {
        int(a): t.tolist() for a, t in zip(agents, np.split(table[:, 1], starts[1:]), strict=True)
    }


def test_an_edge_without_placement_runs_its_own_range(placement_gateway: RunningGateway) -> None:
    """The old flags: ``--agents N`` and no ASSIGN, whatever the gateway's swarm holds."""
    gateway = placement_gateway
    ask(gateway, "agents.add", {"first_id": 0, "count": 50, "policy": "boids"})
    edge = run_edge(gateway, "edge-old", agents=20, ticks=20, tick_hz=0)
    try:
        out, _ = edge.communicate(timeout=60)
    finally:
        stop_process(edge)
    assert edge.returncode == 0
    summary = [line for line in out.splitlines() if '"summary"' in line][-1]
    assert '"agents":20' in summary
    assert '"observations_acked":400' in summary
    assert all(row["checkpoint"] is None for row in agents(gateway).values())


def test_placement_needs_the_simulated_world(
    placement_gateway: RunningGateway, tmp_path: Path
) -> None:
    edge = run_edge(
        placement_gateway,
        "edge-mqtt",
        agents=1,
        ticks=1,
        extra=("--placement", "--io", "mqtt://127.0.0.1:1/x"),
    )
    _, err = edge.communicate(timeout=60)
    assert edge.returncode == 2
    assert "--placement runs with --io sim only" in err
