"""An edge's wall clock jumps, back an hour and then forward two, under load.

The edge runs under libfaketime (Debian package ``libfaketime``, preloaded into the edge
process only: the machine's clock is shared) reading its offset from a file, so the
offset changes while it runs; its monotonic clocks are left alone, as NTP would leave
them. Ticks are paced and acknowledgements timed on the monotonic clock: the edge must
keep ticking at its rate, stay connected, and deliver everything once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgeswarm.chaos.processes import ProgressLines, start_edge, start_gateway, stop
from edgeswarm.chaos.verdict import delivery, finish, rate

FAKETIME_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def _ticks_per_s(lines: list[dict[str, Any]], start: float, end: float) -> float | None:
    window = [line for line in lines if start <= line["at"] <= end]
    if len(window) < 2 or window[-1]["at"] <= window[0]["at"]:
        return None
    span = float(window[-1]["at"]) - float(window[0]["at"])
    return round((int(window[-1]["tick"]) - int(window[0]["tick"])) / span, 1)


def clock_jump_edge(work: Path) -> dict[str, Any]:
    if not FAKETIME_LIBRARY.exists():
        raise AssertionError(f"{FAKETIME_LIBRARY} missing (Debian package libfaketime)")
    offset = work / "faketime"
    offset.write_text("+0\n")
    clock = {
        "LD_PRELOAD": str(FAKETIME_LIBRARY), "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }  # fmt: skip
    gateway = start_gateway(work / "gw")
    edge = start_edge(f"127.0.0.1:{gateway.port}", gateway.ca, gateway.edge_token(),
                      work / "edge", "--agents", "1000", "--tick-hz", "50", "--ticks", "400",
                      "--drain-timeout", "60", env=clock)  # fmt: skip
    lines = ProgressLines(edge)
    try:
        start = lines.steady(1.5)
        back_at = time.monotonic()
        offset.write_text("-3600\n")  # an hour back
        lines.for_seconds(2.0)
        forward_at = time.monotonic()
        offset.write_text("+3600\n")  # two hours forward from there
        lines.for_seconds(2.0)
        settled_at = time.monotonic()
        rest = lines.rest()
        returncode = edge.wait(30)
        summary = rest[-1]
        figures = delivery(gateway, summary, returncode=returncode,
                           sent_batches=summary["batches_sent"])  # fmt: skip
        before = _ticks_per_s(rest, start, back_at)
        during = [
            _ticks_per_s(rest, back_at, forward_at),
            _ticks_per_s(rest, forward_at, settled_at),
        ]
        figures.update(
            ticks_per_s_before=before,
            ticks_per_s_back_1h=during[0],
            ticks_per_s_forward_2h=during[1],
            throughput_before=rate(rest, start, back_at),
            throughput_during=rate(rest, back_at, settled_at),
            connects=summary.get("connects"),
        )
        steady = before is not None and all(r is not None and r >= 0.7 * before for r in during)
        return finish("clock_jump_edge", figures, kept_its_tick_rate=steady,
                      stayed_connected=summary.get("connects") == 1)  # fmt: skip
    finally:
        stop(edge)
        stop(gateway.process)
