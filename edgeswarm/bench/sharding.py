"""Suite "sharding": placement of agents on edges (edgeswarm.placement).

Cases (``ring`` is the default placer, ``DEFAULT_PLACER``; the others are the
alternatives it was chosen against, with the same metrics):

- ``ring`` / ``rendezvous`` / ``maglev``:
  - ``lookups_per_s``: agent ids placed per second by one vectorised
    ``lookup`` of 1,000,000 ids over 10 members of weight 1 (best of 5).
  - ``moved_fraction_over_ideal``: agents that change owner when one member
    joins N, divided by the ideal 1/(N+1); the largest over N = 5, 10, 20, 50
    (1,000,000 agents).
  - ``imbalance_max_over_mean``: the most agents on one member over the mean,
    at the default settings; the largest over N = 5, 10, 20, 50.
- ``migration``: ``agents_per_s``, agents (rows + state) moved between two real
  edge processes through a real gateway by a drain (``bench/migration.py``).
"""

from __future__ import annotations

import time

import numpy as np

from edgeswarm.bench import BenchResult
from edgeswarm.bench.migration import run_migration
from edgeswarm.placement import DEFAULT_PLACER, build_placer

AGENTS = 1_000_000
LOOKUP_MEMBERS = 10
SIZES = (5, 10, 20, 50)
REPEATS = 5


def _members(n: int) -> dict[str, float]:
    return {f"edge-{i}": 1.0 for i in range(n)}


def placer_case(case: str, kind: str) -> list[BenchResult]:
    """The three metrics of one placer."""
    ids = np.arange(AGENTS, dtype=np.uint32)
    placer = build_placer(kind, _members(LOOKUP_MEMBERS))
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        placer.lookup(ids)
        best = min(best, time.perf_counter() - start)
    moved_over_ideal = 0.0
    imbalance = 0.0
    for n in SIZES:
        before = build_placer(kind, _members(n))
        after = build_placer(kind, _members(n + 1))
        owners_before = np.array(before.nodes)[before.lookup(ids)]
        owners_after = np.array(after.nodes)[after.lookup(ids)]
        moved = float(np.mean(owners_before != owners_after))
        moved_over_ideal = max(moved_over_ideal, moved * (n + 1))
        counts = np.bincount(before.lookup(ids), minlength=n)
        imbalance = max(imbalance, float(counts.max() / counts.mean()))
    return [
        BenchResult("sharding", case, "lookups_per_s", AGENTS / best, "lookups/s"),
        BenchResult("sharding", case, "moved_fraction_over_ideal", moved_over_ideal, "ratio"),
        BenchResult("sharding", case, "imbalance_max_over_mean", imbalance, "ratio"),
    ]


def run() -> list[BenchResult]:
    results = placer_case("ring", DEFAULT_PLACER)
    for kind in ("rendezvous", "maglev"):
        if kind != DEFAULT_PLACER:
            results += placer_case(kind, kind)
    return results + run_migration()
