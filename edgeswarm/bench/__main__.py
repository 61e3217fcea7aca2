"""``python -m edgeswarm.bench SUITE [--json]``: run a suite, print its results."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from edgeswarm.bench import (
    BenchResult,
    crdt,
    edge,
    host,
    host_imports,
    inference,
    io,
    preauth,
    sharding,
    swarm,
    transport,
)

SUITES: dict[str, Callable[[], list[BenchResult]]] = {
    "crdt": crdt.run,
    "edge": edge.run,
    "host_imports": host_imports.run,
    "inference": inference.run,
    "io": io.run,
    "preauth": preauth.run,
    "sharding": sharding.run,
    "swarm": swarm.run,
    "transport": transport.run,
}


def format_results(results: list[BenchResult], *, as_json: bool) -> list[str]:
    """Output lines: one JSON object per result, or a table with a header."""
    if as_json:
        return [json.dumps(result.to_dict()) for result in results]
    lines = [f"{'bench':<8} {'case':<22} {'metric':<17} {'value':>16}  unit"]
    lines += [
        f"{r.bench:<8} {r.case:<22} {r.metric:<17} {_number(r.value):>16}  {r.unit}"
        for r in results
    ]
    return lines


def _number(value: float) -> str:
    """Thousands separators for big values, two decimals for small ones (milliseconds)."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeswarm.bench")
    parser.add_argument("suite", help=f"suite to run: {', '.join(sorted(SUITES))}")
    parser.add_argument("--json", action="store_true", help="print one JSON object per result")
    args = parser.parse_args(argv)
    suite = SUITES.get(args.suite)
    if suite is None:
        known = ", ".join(sorted(SUITES))
        print(f"unknown suite {args.suite!r}; known suites: {known}", file=sys.stderr)
        return 2
    before, started = host.sample_cpu_times(), time.monotonic()
    results = suite()
    after = host.sample_cpu_times()
    if before is not None and after is not None:  # how busy the machine was, for the reader
        print(host.host_line(before, after, time.monotonic() - started), file=sys.stderr)
    for line in format_results(results, as_json=args.json):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
