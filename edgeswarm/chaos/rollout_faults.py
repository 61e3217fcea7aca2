"""A rollout of a trapping module under load: the gateway rolls it back by itself.

A gateway's registry holds ``counter`` 1.0.0 (deployed) and 3.0.0, whose step traps,
both published with the CLI under a trusted key; an edge streams 2 000 agents at 50 Hz
running 1.0.0 from the registry and recording its actions. 3.0.0 is rolled out to half
of the agents: the gateway must roll it back within its bound, the stream must lose
nothing acknowledged and store nothing twice, and every agent must keep its state.

The module counts its own steps in ``state[0]`` and writes the count as an action
(:mod:`edgeswarm.chaos.counter_module`): an agent whose recorded counts, on the ticks it
stepped, are not 1, 2, 3, ... lost its state or stepped twice.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeswarm.chaos.counter_module import counter_wasm, recorded_counts
from edgeswarm.chaos.processes import (
    ProgressLines,
    edgeswarm_command,
    start_edge,
    start_gateway,
    stop,
    tail,
    wait_until,
)
from edgeswarm.chaos.verdict import delivery, finish, rate
from edgeswarm.identity import load_or_create_key, public_key_text
from edgeswarm.registry import HistoryEntry, ModuleStore

AGENTS = 2000
TICK_HZ = 50
REPORT_TICKS = 2
WINDOW = 3
"""Reports the rollout judges over: v3 faults from its first tick, so it is rolled back
within WINDOW reports of REPORT_TICKS ticks each after its first report."""
ROUND_TRIP_TICKS = 25
"""Ticks (0.5 s at 50 Hz) allowed on top for the last report to reach the gateway under
load and the rollback's assignment to come back and be applied."""
BOUND_TICKS = (WINDOW + 2) * REPORT_TICKS + ROUND_TRIP_TICKS
"""At most this many ticks lost by an agent that ran the trapping version."""


def _cli(*args: str) -> None:
    done = subprocess.run(edgeswarm_command(*args), capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"edgeswarm {' '.join(args[:3])}: exit {done.returncode}: "
                             f"{done.stderr.strip()[-400:]}")  # fmt: skip


def _publish(gateway_dir: Path, work: Path) -> Path:
    """Trust a publisher key for ``counter``, sign and publish 1.0.0 and the trapping
    3.0.0, deploy 1.0.0. Returns the 1.0.0 file (the edge's bootstrap policy)."""
    where = ("--data-dir", str(gateway_dir))
    key = work / "publisher.key"
    publisher = public_key_text(load_or_create_key(key).public_key)
    _cli("agents", "trust", "add", "--public-key", publisher, "--names", "counter", *where)
    for version, marker in (("1.0.0", 1.0), ("3.0.0", None)):
        wasm = work / f"counter-{version}.wasm"
        wasm.write_bytes(counter_wasm(marker))
        _cli("agents", "sign", str(wasm), "--name", "counter", "--version", version,
             "--key", str(key))  # fmt: skip
        _cli("agents", "publish", str(wasm), *where, "--actor", "chaos")
    _cli("agents", "rollout", "counter", "1.0.0", *where, "--actor", "chaos")
    return work / "counter-1.0.0.wasm"


def _changes(gateway_dir: Path) -> list[HistoryEntry]:
    """Every change to ``counter`` in the gateway's registry, oldest first."""
    with ModuleStore(gateway_dir / "modules.db") as store:
        return store.history("counter")


def _rolled_back(gateway_dir: Path) -> bool:
    """The last change is a rollback by the gateway itself (actor ``rollout``)."""
    last = _changes(gateway_dir)[-1]
    return (last.action, last.actor) == ("rollback", "rollout")


def agent_steps(actions_file: Path) -> dict[str, Any]:
    """What the recorded action stream says of every agent: ``ticks_gap`` (recorded
    ticks not 0, 1, 2, ...), ``agents_trapped`` (agents with a tick of zero actions: a
    quarantined slot), ``agents_state_lost`` (agents whose counts on the ticks they
    stepped are not 1, 2, 3, ...: state lost, or a step applied twice), and the most and
    fewest ticks a trapped agent lost."""
    ticks, counts, markers = recorded_counts(actions_file)
    stepped = markers != 0.0
    state_lost = sum(
        not np.array_equal(counts[stepped[:, a], a], np.arange(1, stepped[:, a].sum() + 1))
        for a in range(counts.shape[1])
    )
    trapped = ~stepped.all(axis=0)
    lost = (len(ticks) - stepped.sum(axis=0))[trapped]
    return {
        "ticks_recorded": len(ticks),
        "ticks_gap": not np.array_equal(ticks, np.arange(len(ticks))),
        "agents_trapped": int(trapped.sum()),
        "agents_state_lost": int(state_lost),
        "ticks_lost_max": int(lost.max()) if lost.size else 0,
        "ticks_lost_min": int(lost.min()) if lost.size else 0,
    }


def rollout_trapping_module(work: Path) -> dict[str, Any]:
    """3.0.0, whose step traps, rolled out to half of 2 000 agents under load: the
    gateway rolls it back within BOUND_TICKS, every batch is stored and applied once,
    every agent keeps its count, the agents that never ran 3.0.0 miss no tick."""
    gateway = start_gateway(work / "gw")
    bootstrap = _publish(gateway.data_dir, work)
    actions_file = work / "edge.act"
    edge = start_edge(
        f"127.0.0.1:{gateway.port}", gateway.ca, gateway.edge_token(), work / "edge",
        "--agents", str(AGENTS), "--tick-hz", str(TICK_HZ), "--duration", "300",
        "--drain-timeout", "60", "--policy", str(bootstrap), "--module", "counter",
        "--module-report-ticks", str(REPORT_TICKS), "--actions-out", str(actions_file),
    )  # fmt: skip
    lines = ProgressLines(edge)
    try:
        log = work / "edge" / "edge.log"
        wait_until(lambda: "module applied" in tail(log, 100_000), 60, "1.0.0 applied")
        start = lines.steady()
        rolled_out_at = time.monotonic()
        _cli("agents", "rollout", "counter", "3.0.0", "--share", "0.5", "--hold", "50",
             "--window", str(WINDOW), "--min-agent-ticks", "10",
             "--data-dir", str(gateway.data_dir), "--actor", "chaos")  # fmt: skip
        wait_until(lambda: _rolled_back(gateway.data_dir), 60, "the gateway rolling 3.0.0 back")
        rolled_back_at = time.monotonic()
        rollout, rollback = _changes(gateway.data_dir)[-2:]
        lines.for_seconds(2.0)
        edge.send_signal(signal.SIGTERM)
        rest = lines.rest()
        returncode = edge.wait(30)
        summary = rest[-1]
        figures = delivery(gateway, summary, returncode=returncode,
                           sent_batches=summary["batches_sent"])  # fmt: skip
        steps = agent_steps(actions_file)
        figures.update(
            throughput_before=rate(rest, start, rolled_out_at),
            throughput_during=rate(rest, rolled_out_at, rolled_back_at),
            throughput_after=rate(rest, rolled_back_at, rest[-2]["at"]),
            rollback_s=round(rollback.at - rollout.at, 3),  # as the registry recorded them
            bound_ticks=BOUND_TICKS,
            modules_at_end=summary.get("modules"),
            **steps,
        )
        return finish(
            "rollout_trapping_module", figures,
            rolled_back_within_bound=0 < steps["ticks_lost_max"] <= BOUND_TICKS,
            half_the_agents_ran_it=0.3 * AGENTS < steps["agents_trapped"] < 0.7 * AGENTS,
            agents_kept_state=steps["agents_state_lost"] == 0 and not steps["ticks_gap"],
            all_back_on_1_0_0=summary.get("modules") == {"counter": {"1.0.0": AGENTS}},
        )  # fmt: skip
    finally:
        stop(edge)
        stop(gateway.process)
