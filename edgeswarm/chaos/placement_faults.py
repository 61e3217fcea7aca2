"""An edge running placed agents is killed with SIGKILL: its agents go on elsewhere.

A gateway owns 2 000 swarm agents; two edges started with ``--placement`` run the
agents it assigns at 50 Hz and checkpoint them every 5 ticks. One is killed with
SIGKILL under load: once it is DOWN (after the idle and edge timeouts) its agents must
go on on the other edge from their last checkpoint, no ``(agent, tick)`` may be logged
twice, and nothing either edge had acknowledged may be lost (docs/operations.md,
"Placement").
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeswarm.chaos.processes import (
    GatewayProcess,
    ProgressLines,
    kill9,
    start_edge,
    start_gateway,
    stop,
    wait_until,
)
from edgeswarm.chaos.verdict import acked_lost, delivery, finish, rate
from edgeswarm.gateway.log.reader import read_records
from edgeswarm.wire import ObservationBatch, decode_payload

AGENTS = 2000
CHECKPOINT_INTERVAL = 5
SURVIVOR, VICTIM = "chaos-edge-a", "chaos-edge-b"
EDGE_OPTIONS = ("--placement", "--checkpoint-interval", str(CHECKPOINT_INTERVAL),
                "--tick-hz", "50", "--duration", "300", "--drain-timeout", "60")  # fmt: skip

AgentRows = dict[int, dict[str, Any]]


def _rows(gateway: GatewayProcess) -> AgentRows:
    listed = gateway.placement("agents.list", {"limit": AGENTS})
    return {int(row["agent_id"]): row for row in listed["agents"]}


def _checkpointed_by_owner(rows: AgentRows, after: AgentRows | None = None) -> bool:
    """Every agent's last checkpoint came from its owner (newer than in ``after``)."""
    for agent_id, row in rows.items():
        saved = row["checkpoint"]
        if row["owner"] is None or saved is None or saved["edge_id"] != row["owner"]:
            return False
        if after is not None and saved["tick"] <= after[agent_id]["checkpoint"]["tick"]:
            return False
    return len(rows) == AGENTS


def _edge_state(gateway: GatewayProcess, edge_id: str) -> str:
    edges = gateway.placement("edges.list")["edges"]
    return str(next((e["state"] for e in edges if e["edge_id"] == edge_id), ""))


def logged_ticks(data_dir: Path, edge_ids: tuple[str, ...]) -> np.ndarray:
    """(agent, tick) of every observation of ``edge_ids`` in the gateway's durable log."""
    log = data_dir / "observations.db"
    pairs = [np.zeros((0, 2), dtype=np.int64)]
    for edge_id in edge_ids:
        for record in read_records(log, log.with_name(log.name + "-segments"), edge_id):
            batch = decode_payload(record.payload)
            if isinstance(batch, ObservationBatch):
                ticks = np.full(batch.count, batch.tick)
                pairs.append(np.stack([batch.agent_ids, ticks], axis=1).astype(np.int64))
    return np.concatenate(pairs)


def tick_figures(steps: np.ndarray, on_victim: np.ndarray, moved: AgentRows) -> dict[str, int]:
    """From the logged (agent, tick) pairs (``on_victim``: the killed edge's): pairs
    logged twice, agents never logged, agents whose ticks do not run 1, 2, 3, ... (a
    moved agent may have one gap: ticks its dead edge stepped but never delivered), and
    the most ticks the killed edge logged for an agent past the checkpoint it was
    restored from (``moved``: those agents' rows at the kill), the state it lost."""
    unique = np.unique(steps, axis=0)
    gaps = 0
    for agent, ticks in zip(*_per_agent(unique), strict=True):
        allowed = 1 if agent in moved else 0
        gaps += int(ticks[0] != 1 or int((np.diff(ticks) != 1).sum()) > allowed)
    stale = 0
    for agent, ticks in zip(*_per_agent(on_victim), strict=True):
        if agent in moved:
            stale = max(stale, int(ticks[-1]) - int(moved[agent]["checkpoint"]["tick"]))
    return {
        "agent_ticks_twice": len(steps) - len(unique),
        "agents_never_logged": AGENTS - len(np.unique(unique[:, 0])),
        "agents_with_gaps": gaps,
        "stale_ticks_max": stale,
    }


def _per_agent(steps: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    """Agent ids and each one's sorted ticks."""
    if not len(steps):
        return [], []
    table = steps[np.lexsort((steps[:, 1], steps[:, 0]))]
    agents, starts = np.unique(table[:, 0], return_index=True)
    return [int(a) for a in agents], np.split(table[:, 1], starts[1:])


def edge_kill9_replacement(work: Path) -> dict[str, Any]:
    """Kill -9 of one of two placement edges under load: its agents resume on the other
    from their last checkpoint, each (agent, tick) logged once, nothing acknowledged
    lost, the survivor delivers everything once."""
    gateway = start_gateway(work / "gw", "--edge-timeout", "2", "--idle-timeout", "3")
    gateway.placement("agents.add", {"first_id": 0, "count": AGENTS, "policy": "boids"})
    target = f"127.0.0.1:{gateway.port}"
    survivor = start_edge(target, gateway.ca, gateway.edge_token(), work / "a", *EDGE_OPTIONS,
                          edge_id=SURVIVOR)  # fmt: skip
    victim = start_edge(target, gateway.ca, gateway.edge_token(), work / "b", *EDGE_OPTIONS,
                        edge_id=VICTIM)  # fmt: skip
    lines, victim_lines = ProgressLines(survivor), ProgressLines(victim)
    try:
        wait_until(lambda: _checkpointed_by_owner(_rows(gateway)), 60,
                   "every agent checkpointed by its owner")  # fmt: skip
        start = lines.steady()
        victim_lines.for_seconds(0.2)  # its latest acknowledgements
        kill9(victim)
        killed_at = time.monotonic()
        acked_by_victim = max(line["batches_acked"] for line in victim_lines.seen)
        at_kill = _rows(gateway)
        moved = {a: row for a, row in at_kill.items() if row["owner"] == VICTIM}
        wait_until(lambda: _edge_state(gateway, VICTIM) == "down", 60, "the killed edge DOWN")
        down_at = time.monotonic()
        wait_until(lambda: _checkpointed_by_owner(_rows(gateway), after=at_kill), 60,
                   "the killed edge's agents checkpointed by the survivor")  # fmt: skip
        resumed_at = time.monotonic()
        resumed = _rows(gateway)
        owners = {resumed[a]["owner"] for a in moved}
        lines.for_seconds(1.0)
        survivor.send_signal(signal.SIGTERM)
        rest = lines.rest()
        returncode = survivor.wait(30)
        summary = rest[-1]
        figures = delivery(gateway, summary, returncode=returncode,
                           sent_batches=summary["batches_sent"], edge_id=SURVIVOR)  # fmt: skip
        figures["acked_lost"] += acked_lost(range(1, acked_by_victim + 1), gateway.data_dir,
                                            edge_id=VICTIM)  # fmt: skip
        steps = tick_figures(logged_ticks(gateway.data_dir, (SURVIVOR, VICTIM)),
                             logged_ticks(gateway.data_dir, (VICTIM,)), moved)  # fmt: skip
        figures["duplicates_applied"] += steps["agent_ticks_twice"]
        figures.update(
            throughput_before=rate(rest, start, killed_at),
            throughput_after=rate(rest, resumed_at, rest[-2]["at"]),
            agents_moved=len(moved),
            down_after_kill_s=round(down_at - killed_at, 2),
            resumed_after_down_s=round(resumed_at - down_at, 2),
            victim_batches_acked=acked_by_victim,
            **steps,
        )
        return finish(
            "edge_kill9_replacement", figures,
            moved_to_the_survivor=bool(moved) and owners == {SURVIVOR},
            every_agent_logged=steps["agents_never_logged"] == 0,
            no_tick_skipped_but_the_dead_edges=steps["agents_with_gaps"] == 0,
            staleness_within_3_intervals=steps["stale_ticks_max"] <= 3 * CHECKPOINT_INTERVAL,
        )  # fmt: skip
    finally:
        stop(survivor)
        stop(victim)
        stop(gateway.process)
