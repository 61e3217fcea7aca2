"""A placement edge cut off from its gateway past ``--edge-timeout``, then healed.

A gateway (``--edge-timeout 2``: a lease of 1 s, ``--lease-ticks`` 50) owns 2 000
swarm agents; two edges started with ``--placement`` run them at 50 Hz and checkpoint
every 5 ticks. One reaches the gateway through a UDP relay, and an nftables rule drops
every packet to and from the relay (that edge alone is cut off, in the scenario's own
network namespace). The cut-off edge must fence itself when its lease runs out; the
gateway finds it DOWN and re-places its agents on the other edge from their last
checkpoints; after the heal the cut-off edge delivers its spool and steps only what it
is assigned again. From the durable log: no ``(agent, tick)`` stepped twice, the ticks
nobody stepped (skipped) and the state lost (stale) within ``--lease-ticks`` plus
3 checkpoint intervals (docs/operations.md, "Partitions: the lease").
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeswarm.chaos.faults import Nftables
from edgeswarm.chaos.placement_faults import (
    AGENTS,
    AgentRows,
    _checkpointed_by_owner,
    _edge_state,
    _per_agent,
    _rows,
    logged_ticks,
)
from edgeswarm.chaos.processes import (
    GatewayProcess,
    ProgressLines,
    start_edge,
    start_gateway,
    stop,
    wait_until,
)
from edgeswarm.chaos.relay import UdpRelay
from edgeswarm.chaos.verdict import delivery, finish, rate
from edgeswarm.placement.lease import DEFAULT_LEASE_TICKS

NAME = "partition_edge_gateway_placement"
CHECKPOINT_INTERVAL = 5
KEPT, CUT = "chaos-edge-kept", "chaos-edge-cut"
EDGE_OPTIONS = ("--placement", "--checkpoint-interval", str(CHECKPOINT_INTERVAL),
                "--tick-hz", "50", "--duration", "300", "--drain-timeout", "60")  # fmt: skip
BOUND_TICKS = DEFAULT_LEASE_TICKS + 3 * CHECKPOINT_INTERVAL
"""Most ticks a moved agent may skip, or lose the state of: its cut-off edge stepped it
at most ``--lease-ticks`` past what the gateway logged, plus the checkpoints' staleness."""


def partition_edge_gateway_placement(work: Path) -> dict[str, Any]:
    """One of two placement edges cut off past the edge timeout, then healed."""
    table = Nftables()
    gateway = start_gateway(work / "gw", "--edge-timeout", "2", "--idle-timeout", "3")
    relay = UdpRelay(("127.0.0.1", gateway.port), delay_s=0.0, jitter_s=0.0)
    edges: dict[str, Any] = {}
    try:
        gateway.placement("agents.add", {"first_id": 0, "count": AGENTS, "policy": "boids"})
        for name, port in ((KEPT, gateway.port), (CUT, relay.address[1])):
            edges[name] = start_edge(f"127.0.0.1:{port}", gateway.ca, gateway.edge_token(),
                                     work / name, *EDGE_OPTIONS, edge_id=name)  # fmt: skip
        return _run(gateway, table, relay.address[1], edges)
    finally:
        for process in edges.values():
            stop(process)
        stop(gateway.process)
        relay.close()
        table.close()


def _run(
    gateway: GatewayProcess, table: Nftables, relay_port: int, edges: dict[str, Any]
) -> dict[str, Any]:
    kept, cut = ProgressLines(edges[KEPT]), ProgressLines(edges[CUT])
    wait_until(lambda: _checkpointed_by_owner(_rows(gateway)), 60,
               "every agent checkpointed by its owner")  # fmt: skip
    start = kept.steady()
    cut.for_seconds(0.2)
    table.partition(relay_port)  # the cut edge's packets, both ways
    cut_at = time.monotonic()
    at_cut = _rows(gateway)
    moved = {a: row for a, row in at_cut.items() if row["owner"] == CUT}
    cut.until(lambda line: line["lease_expired"] >= 1, timeout=30)
    fenced_after_s = cut.seen[-1]["at"] - cut_at
    fenced_agents = max(line["fenced_agents"] for line in cut.seen)
    wait_until(lambda: _edge_state(gateway, CUT) == "down", 60, "the cut-off edge DOWN")
    down_at = time.monotonic()
    wait_until(lambda: _checkpointed_by_owner(_rows(gateway), after=at_cut), 60,
               "the cut-off edge's agents checkpointed by the other edge")  # fmt: skip
    resumed_at = time.monotonic()
    resumed = _rows(gateway)
    cut.for_seconds(0.3)  # its lines up to now (it goes on printing while fenced)
    stepped_while_down = cut.seen[-1]["tick"] - _tick_at(cut, down_at)
    table.heal()
    healed_at = time.monotonic()
    wait_until(lambda: _edge_state(gateway, CUT) == "active", 60, "the healed edge ACTIVE")
    wait_until(
        lambda: _back_on(_rows(gateway), resumed),
        60,
        "agents placed on the healed edge again, checkpointed by their owners",
    )
    back_at = time.monotonic()
    kept.for_seconds(1.0)
    summaries: dict[str, dict[str, Any]] = {}
    figures: dict[str, Any] = {"acked_lost": 0, "duplicates_applied": 0, "failed_checks": []}
    for name, lines in ((CUT, cut), (KEPT, kept)):
        edges[name].send_signal(signal.SIGTERM)
        rest = lines.rest()
        summaries[name] = rest[-1]
        one = delivery(gateway, rest[-1], returncode=edges[name].wait(30),
                       sent_batches=rest[-1]["batches_sent"], edge_id=name)  # fmt: skip
        figures["acked_lost"] += one["acked_lost"]
        figures["duplicates_applied"] += one["duplicates_applied"]
        figures["failed_checks"] += [f"{name}:{check}" for check in one["failed_checks"]]
    both, on_cut = (logged_ticks(gateway.data_dir, names) for names in ((KEPT, CUT), (CUT,)))
    steps = partition_tick_figures(both, on_cut, moved, resumed)
    figures["duplicates_applied"] += steps["agent_ticks_twice"]
    figures.update(
        throughput_before=rate(kept.seen, start, cut_at),
        throughput_after=rate(kept.seen, back_at, kept.seen[-2]["at"]),
        agents_fenced=fenced_agents,
        fenced_after_s=round(fenced_after_s, 2),
        lease_expired=summaries[CUT]["lease_expired"],
        cut_edge_ticks_while_down=stepped_while_down,
        agents_replaced=sum(resumed[a]["owner"] == KEPT for a in moved),
        down_after_cut_s=round(down_at - cut_at, 2),
        resumed_after_down_s=round(resumed_at - down_at, 2),
        back_after_heal_s=round(back_at - healed_at, 2),
        bound_ticks=BOUND_TICKS,
        **steps,
    )
    return finish(
        NAME, figures,
        fenced_before_down=fenced_after_s < down_at - cut_at and fenced_agents >= len(moved) > 0,
        no_step_while_down=stepped_while_down == 0,
        replaced_on_the_other_edge=figures["agents_replaced"] == len(moved),
        every_agent_logged=steps["agents_never_logged"] == 0,
        skipped_within_bound=steps["skipped_ticks_max"] <= BOUND_TICKS,
        stale_within_bound=steps["stale_ticks_max"] <= BOUND_TICKS,
    )  # fmt: skip


def _tick_at(lines: ProgressLines, at: float) -> int:
    """The edge's tick in its last progress line before ``at``."""
    return int(max((line["tick"] for line in lines.seen if line["at"] <= at), default=0))


def _back_on(rows: AgentRows, resumed: AgentRows) -> bool:
    """The healed edge owns agents again and every agent is checkpointed by its owner
    past where it was when the moved agents had resumed."""
    return any(row["owner"] == CUT for row in rows.values()) and _checkpointed_by_owner(
        rows, after=resumed
    )


def partition_tick_figures(
    steps: np.ndarray, on_cut: np.ndarray, moved: AgentRows, resumed: AgentRows
) -> dict[str, int]:
    """From the logged (agent, tick) pairs (``on_cut``: the cut-off edge's): pairs logged
    twice, agents never logged, the most ticks a moved agent skipped (a gap in its
    ticks) and the most it lost the state of (ticks the cut-off edge logged, before the
    agent resumed elsewhere, past the checkpoint it resumed from: ``moved`` has the
    rows at the cut, ``resumed`` those once the other edge checkpointed it)."""
    unique = np.unique(steps, axis=0)
    skipped = stale = 0
    cut_ticks = dict(zip(*_per_agent(on_cut), strict=True))
    for agent, ticks in zip(*_per_agent(unique), strict=True):
        if agent not in moved:
            continue
        gaps = np.diff(ticks)
        skipped = max(skipped, int(gaps.max()) - 1 if gaps.size else 0)
        resumed_from = int(moved[agent]["checkpoint"]["tick"])
        before = cut_ticks.get(agent, np.zeros(0, np.int64))
        before = before[before < int(resumed[agent]["checkpoint"]["tick"])]
        if before.size:
            stale = max(stale, int(before.max()) - resumed_from)
    return {
        "agent_ticks_twice": len(steps) - len(unique),
        "agents_never_logged": AGENTS - len(np.unique(unique[:, 0])),
        "skipped_ticks_max": skipped,
        "stale_ticks_max": stale,
    }
