"""scripts/chaos: a bounded subset of the scenarios runs in the suite, checked by their
JSON lines; the harness's own parts (relay, verdict) are checked to be able to fail.

The full run is ``scripts/chaos --json`` (docs/reliability.md), not part of the suite.
"""

from __future__ import annotations

import ast
import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeswarm.chaos.catalog import SCENARIOS
from edgeswarm.chaos.placement_faults import AGENTS, tick_figures
from edgeswarm.chaos.placement_partition import BOUND_TICKS as PARTITION_BOUND
from edgeswarm.chaos.placement_partition import partition_tick_figures
from edgeswarm.chaos.relay import UdpRelay
from edgeswarm.chaos.rollout_faults import BOUND_TICKS, agent_steps
from edgeswarm.chaos.verdict import acked_lost, edge_checks, finish
from edgeswarm.edge.io.actions_file import KIND
from edgeswarm.storage.recording import RecordingWriter
from edgeswarm.wire.arrays import encode_array

ROOT = Path(__file__).resolve().parent.parent


def chaos(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeswarm.chaos", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.mark.integration
def test_quick_scenarios_lose_nothing_acknowledged_and_apply_nothing_twice() -> None:
    done = chaos("--json", "gateway_kill9", "partition_edge_gateway", "edge_kill9_replacement")
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["scenario"] for line in lines] == [
        "gateway_kill9", "partition_edge_gateway", "edge_kill9_replacement",
    ], done.stderr  # fmt: skip
    kill, partition, replacement = lines
    assert kill["passed"] is True, kill
    assert (kill["acked_lost"], kill["duplicates_applied"]) == (0, 0)
    assert kill["batches_stored"] == kill["batches_sent"] == 350 * 4
    assert kill["throughput_during"] == 0.0 < kill["throughput_before"]
    if partition.get("skipped"):  # not root, or no namespaces here: it must say why
        assert "root" in partition["skipped"] or "namespace" in partition["skipped"]
    else:
        assert partition["passed"] is True, partition
        assert (partition["acked_lost"], partition["duplicates_applied"]) == (0, 0)
        assert partition["throughput_during"] == 0.0
        assert partition["in_flight_during_max"] > 100  # it spooled through the cut
    assert replacement["passed"] is True, replacement
    assert (replacement["acked_lost"], replacement["duplicates_applied"]) == (0, 0)
    assert replacement["agent_ticks_twice"] == replacement["agents_with_gaps"] == 0
    assert 600 < replacement["agents_moved"] < 1400  # about half of the 2 000
    assert replacement["throughput_after"] > 1.5 * replacement["throughput_before"]
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.integration
def test_an_edge_whose_disk_fills_waits_for_room_and_then_delivers_everything_once() -> None:
    done = chaos("--json", "edge_disk_full")
    (line,) = [json.loads(line) for line in done.stdout.splitlines()]
    if line.get("skipped"):  # not root, or no namespaces here: it must say why
        assert "root" in line["skipped"] or "namespace" in line["skipped"]
        return
    assert line["passed"] is True, line
    assert (line["acked_lost"], line["duplicates_applied"]) == (0, 0)
    assert line["batches_stored"] == line["batches_sent"] == 450 * 2
    assert line["ticks_while_full"] == 0
    assert line["disk_full_waits"] >= 1
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.integration
def test_a_trapping_rollout_is_rolled_back_in_its_bound_and_every_agent_keeps_its_state() -> None:
    done = chaos("--json", "rollout_trapping_module")
    line = json.loads(done.stdout.splitlines()[-1])
    assert line["passed"] is True, line
    assert (line["acked_lost"], line["duplicates_applied"]) == (0, 0)
    assert line["batches_stored"] == line["batches_sent"] > 0
    assert 600 < line["agents_trapped"] < 1400  # the rollout's 50 % of 2 000
    assert 0 < line["ticks_lost_max"] <= BOUND_TICKS
    assert line["agents_state_lost"] == 0
    assert line["modules_at_end"] == {"counter": {"1.0.0": 2000}}
    assert done.returncode == 0, done.stderr


def test_agent_steps_sees_a_lost_state_a_double_step_and_the_ticks_a_trap_cost(
    tmp_path: Path,
) -> None:
    """Four agents over 6 ticks: 0 steps every tick; 1 traps on ticks 2-3 and goes on
    from its count; 2 restarts from 1 after its trap (state lost); 3 counts 2 twice."""
    counts = [[1, 1, 1, 1], [2, 2, 2, 2], [3, 0, 0, 2], [4, 0, 0, 3], [5, 3, 1, 4], [6, 4, 2, 5]]
    path = tmp_path / "edge.act"
    writer = RecordingWriter(path, KIND)
    for tick, row in enumerate(counts):
        actions = np.array([[c, 1.0 if c else 0.0] for c in row], dtype=np.float32)
        writer.write({"tick": tick, "actions": encode_array(actions)})
    writer.close()
    steps = agent_steps(path)
    assert steps == {
        "ticks_recorded": 6, "ticks_gap": False, "agents_trapped": 2,
        "agents_state_lost": 2, "ticks_lost_max": 2, "ticks_lost_min": 2,
    }  # fmt: skip


def test_tick_figures_see_a_tick_logged_twice_a_gap_a_missing_agent_and_the_staleness() -> None:
    """Agent 0 stays (ticks 1-6 once); agent 1 moves from its checkpoint at tick 2, its
    dead edge had logged up to 4 (2 ticks of state lost), the new owner goes on at 5;
    agent 2 moves too but its tick 4 is logged by both edges; agent 3 stays and skips
    tick 3. The other AGENTS - 4 agents are never logged."""
    survivor = [(0, t) for t in range(1, 7)] + [(1, 5), (1, 6), (2, 4), (2, 5)]
    survivor += [(3, 1), (3, 2), (3, 4)]
    victim = [(1, t) for t in range(1, 5)] + [(2, t) for t in range(1, 5)]
    moved = {1: {"checkpoint": {"tick": 2}}, 2: {"checkpoint": {"tick": 3}}}
    steps = np.array(survivor + victim, dtype=np.int64)
    assert tick_figures(steps, np.array(victim, dtype=np.int64), moved) == {
        "agent_ticks_twice": 1, "agents_never_logged": AGENTS - 4,
        "agents_with_gaps": 1, "stale_ticks_max": 2,
    }  # fmt: skip


@pytest.mark.integration
def test_a_cut_off_placement_edge_fences_itself_and_no_agent_steps_on_two_edges() -> None:
    done = chaos("--json", "partition_edge_gateway_placement")
    line = json.loads(done.stdout.splitlines()[-1])
    if line.get("skipped"):  # not root, or no namespaces here: it must say why
        assert "root" in line["skipped"] or "namespace" in line["skipped"]
        return
    assert line["passed"] is True, line
    assert (line["acked_lost"], line["duplicates_applied"], line["agent_ticks_twice"]) == (0, 0, 0)
    assert line["lease_expired"] >= 1
    assert line["cut_edge_ticks_while_down"] == 0
    assert 600 < line["agents_fenced"] == line["agents_replaced"] < 1400
    assert line["skipped_ticks_max"] <= PARTITION_BOUND
    assert done.returncode == 0, done.stderr


def test_partition_tick_figures_see_a_double_step_a_skip_and_the_staleness() -> None:
    """Agent 0 stays on the kept edge; agent 1 was cut off at its checkpoint 2, the
    cut-off edge logged up to 4 (2 ticks of state lost), the other edge resumed it at 8
    (3 ticks skipped) and checkpointed it at 9; agent 2 moved the same way but its
    tick 4 is logged by both edges."""
    kept = [(0, t) for t in range(1, 10)] + [(1, 8), (1, 9), (2, 4), (2, 5)]
    cut = [(1, t) for t in range(1, 5)] + [(2, t) for t in range(1, 5)]
    moved = {1: {"checkpoint": {"tick": 2}}, 2: {"checkpoint": {"tick": 3}}}
    resumed = {1: {"checkpoint": {"tick": 9}}, 2: {"checkpoint": {"tick": 5}}}
    steps = np.array(kept + cut, dtype=np.int64)
    assert partition_tick_figures(steps, np.array(cut, dtype=np.int64), moved, resumed) == {
        "agent_ticks_twice": 1, "agents_never_logged": AGENTS - 3,
        "skipped_ticks_max": 3, "stale_ticks_max": 2,
    }  # fmt: skip


def test_list_names_every_scenario_and_an_unknown_name_exits_2() -> None:
    listed = chaos("--list", timeout=60)
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [s.name for s in SCENARIOS]
    unknown = chaos("no_such_scenario", timeout=60)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "unknown scenario no_such_scenario: see scripts/chaos --list"


def test_verdict_counts_an_acknowledged_batch_missing_from_the_log(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "observations.db") as db:
        db.execute("CREATE TABLE batches (edge_id TEXT, seq INTEGER, count INTEGER)")
        db.executemany("INSERT INTO batches VALUES ('e', ?, 10)", [(1,), (2,), (4,)])
    assert acked_lost(range(1, 5), tmp_path, edge_id="e") == 1
    assert acked_lost(range(1, 3), tmp_path, edge_id="e") == 0
    lost = finish("x", {"acked_lost": 1, "duplicates_applied": 0, "failed_checks": []})
    twice = finish("x", {"acked_lost": 0, "duplicates_applied": 2, "failed_checks": []})
    check = finish("x", {"acked_lost": 0, "duplicates_applied": 0, "failed_checks": []}, ok=False)
    assert [lost["passed"], twice["passed"], check["passed"]] == [False, False, False]
    assert check["failed_checks"] == ["ok"]


def test_edge_checks_fail_each_on_its_own_fault() -> None:
    """The checks every delivery verdict (one gateway or two) asks of the edge."""
    done = {"event": "summary", "in_flight": 0, "batches_acked": 3, "batches_sent": 3}
    assert edge_checks(done, 0, {1, 2, 3}) == dict.fromkeys(
        ("edge_summary", "edge_exit_0", "all_acked", "no_gap"), True
    )

    def failed(summary: dict[str, object], returncode: int | None, stored: list[int]) -> set[str]:
        return {name for name, ok in edge_checks(summary, returncode, stored).items() if not ok}

    assert failed({**done, "event": "progress"}, 0, [1, 2, 3]) == {"edge_summary"}
    assert failed(done, None, [1, 2, 3]) == {"edge_exit_0"}  # still running, or killed
    assert failed({**done, "in_flight": 1}, 0, [1, 2, 3]) == {"all_acked"}
    assert failed({**done, "batches_acked": 2}, 0, [1, 2, 3]) == {"all_acked"}
    assert failed(done, 0, [1, 3, 4]) == {"no_gap"}
    assert failed(done, 0, [1, 2, 2, 3]) == {"no_gap"}  # one stored twice in one log


def test_relay_delays_jitters_and_reorders_but_delivers_every_datagram() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:  # fmt: skip
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        relay = UdpRelay(server.getsockname(), delay_s=0.05, jitter_s=0.02, seed=1)
        try:
            sent_at = time.monotonic()
            for i in range(200):
                client.sendto(i.to_bytes(2, "big"), relay.address)
            got = [int.from_bytes(server.recvfrom(64)[0], "big") for _ in range(200)]
            first_after = time.monotonic() - sent_at
        finally:
            relay.close()
    assert sorted(got) == list(range(200))  # every one, once
    assert got != list(range(200))  # but not in order
    assert relay.reordered > 0
    assert first_after >= 0.03  # nothing came through faster than delay - jitter


def test_no_other_room_imports_the_chaos_harness() -> None:
    importers = []
    for path in (ROOT / "edgeswarm").rglob("*.py"):
        if "chaos" in path.relative_to(ROOT / "edgeswarm").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])  # fmt: skip
            if any(name.startswith("edgeswarm.chaos") for name in names):
                importers.append(str(path))
    assert importers == []
