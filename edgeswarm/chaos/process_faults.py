"""Scenarios that fault the processes themselves: kill -9, stop/continue (a slow gateway).

Each takes a fresh working directory, starts what it needs, injects its fault under
load, tears everything down, and returns its JSON line (:func:`verdict.finish`).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from edgeswarm.chaos.processes import (
    GatewayProcess,
    ProgressLines,
    kill9,
    logged_batches,
    rss_kib,
    start_edge,
    start_gateway,
    stop,
)
from edgeswarm.chaos.verdict import delivery, finish, rate

LOAD = ("--agents", "2000", "--tick-hz", "50", "--drain-timeout", "60")
"""2 000 agents at 50 Hz in batches of 500: 200 batches and 100 000 observations a second."""


def gateway_kill9(work: Path) -> dict[str, Any]:
    """The gateway is killed with SIGKILL under load and restarted on the same port and
    data directory: what it acknowledged is in its log, the edge spools meanwhile and
    replays, every batch is stored and applied once."""
    gateway = start_gateway(work / "gw")
    restarted: GatewayProcess | None = None
    edge = start_edge(f"127.0.0.1:{gateway.port}", gateway.ca, gateway.edge_token(),
                      work / "edge", *LOAD, "--ticks", "350")  # fmt: skip
    lines = ProgressLines(edge)
    try:
        start = lines.steady()
        killed_at = time.monotonic()
        kill9(gateway.process)
        stop(gateway.process)
        lines.for_seconds(1.0)  # the edge steps and spools with no gateway
        acked_at_kill = max(line["batches_acked"] for line in lines.seen)
        in_log_after_kill = {seq for seq, _ in logged_batches(gateway.data_dir)}
        restart_at = time.monotonic()
        restarted = start_gateway(work / "gw", port=gateway.port)
        # acks again (the summary line counts: under load the edge may have finished its
        # ticks while the gateway was down, and drain everything at once)
        lines.until(lambda line: line["batches_acked"] > acked_at_kill)
        recovered_at = time.monotonic()
        rest = lines.rest()
        returncode = edge.wait(30)
        summary = rest[-1]
        figures = delivery(
            restarted, summary, returncode=returncode, sent_batches=summary["batches_sent"],
            acknowledged=range(1, acked_at_kill + 1),
        )  # fmt: skip
        acked_then_lost = len(set(range(1, acked_at_kill + 1)) - in_log_after_kill)
        figures["acked_lost"] += acked_then_lost
        figures.update(
            throughput_before=rate(rest, start, killed_at),
            throughput_during=rate(rest, killed_at, restart_at),
            throughput_after=rate(rest, recovered_at, rest[-2]["at"]),
            recovery_s=round(recovered_at - restart_at, 2),
            batches_acked_at_kill=acked_at_kill,
        )
        return finish("gateway_kill9", figures, reconnected=summary.get("connects") == 2)
    finally:
        stop(edge)
        for running in (gateway, restarted):
            if running is not None:
                stop(running.process)


def edge_kill9(work: Path) -> dict[str, Any]:
    """The edge is killed with SIGKILL under load and started again on the same data
    directory: its spool replays in one numbering with no gap, each batch once."""
    gateway = start_gateway(work / "gw")
    token = gateway.edge_token(uses=2)
    target = f"127.0.0.1:{gateway.port}"
    first = start_edge(target, gateway.ca, token, work / "edge", "--agents", "4000",
                       "--tick-hz", "0", "--duration", "60")  # fmt: skip
    second = None
    lines = ProgressLines(first)
    try:
        lines.until(lambda line: line["batches_acked"] >= 200)
        kill9(first)
        killed_at = time.monotonic()
        sent_by_first = max(line["batches_sent"] for line in lines.seen)
        acknowledged = {seq for seq, _ in logged_batches(gateway.data_dir)}
        second = start_edge(target, gateway.ca, token, work / "edge", "--agents", "4000",
                            "--ticks", "2", "--drain-timeout", "60")  # fmt: skip
        rest = ProgressLines(second).rest()
        returncode = second.wait(30)
        replayed_s = time.monotonic() - killed_at
        summary = rest[-1]
        stored = logged_batches(gateway.data_dir)
        # The killed edge may have committed batches after its last progress line: the
        # sent total is what the log holds, checked for gaps and against the summaries.
        sent = max(len(stored), sent_by_first + summary.get("batches_sent", 0))
        figures = delivery(gateway, summary, returncode=returncode, sent_batches=sent,
                           acknowledged=acknowledged)  # fmt: skip
        figures.update(
            batches_acked_before_kill=len(acknowledged),
            batches_carried_over=summary.get("batches_carried_over"),
            restart_to_drained_s=round(replayed_s, 2),
            quarantined_batches=summary.get("quarantined_batches"),
        )
        return finish(
            "edge_kill9", figures, nothing_quarantined=not summary.get("quarantined_batches")
        )
    finally:
        stop(first)
        if second is not None:
            stop(second)
        stop(gateway.process)


def slow_gateway(work: Path) -> dict[str, Any]:
    """The gateway is made slow (stopped 80 % of every 250 ms, SIGSTOP/SIGCONT) for 4 s:
    back-pressure reaches the edge (its unacknowledged batches grow), its memory stays
    bounded, and everything is delivered once the gateway is back to speed."""
    gateway = start_gateway(work / "gw")
    edge = start_edge(f"127.0.0.1:{gateway.port}", gateway.ca, gateway.edge_token(),
                      work / "edge", *LOAD, "--ticks", "400")  # fmt: skip
    lines = ProgressLines(edge)
    try:
        start = lines.steady()
        in_flight_before = max(line["in_flight"] for line in lines.seen)
        slow_from = time.monotonic()
        rss = [rss_kib(edge.pid)]
        for _ in range(16):  # 4 s: 200 ms stopped, 50 ms running
            os.kill(gateway.process.pid, signal.SIGSTOP)
            time.sleep(0.2)
            os.kill(gateway.process.pid, signal.SIGCONT)
            time.sleep(0.05)
            rss.append(rss_kib(edge.pid))
        slow_until = time.monotonic()
        rest = lines.rest()
        returncode = edge.wait(30)
        summary = rest[-1]
        during = [line for line in rest if slow_from <= line["at"] <= slow_until]
        in_flight_during = max((line["in_flight"] for line in during), default=0)
        figures = delivery(gateway, summary, returncode=returncode,
                           sent_batches=summary["batches_sent"])  # fmt: skip
        growth = max(rss[4:]) - rss[4] if len(rss) > 4 else 0
        figures.update(
            throughput_before=rate(rest, start, slow_from),
            throughput_during=rate(rest, slow_from, slow_until),
            throughput_after=rate(rest, slow_until, rest[-2]["at"]),
            in_flight_before=in_flight_before,
            in_flight_during=in_flight_during,
            edge_rss_growth_kib=growth,
        )
        return finish(
            "slow_gateway", figures,
            backpressure_reached_edge=in_flight_during > in_flight_before,
            edge_memory_bounded=growth < 20 * 1024,
        )  # fmt: skip
    finally:
        os.kill(gateway.process.pid, signal.SIGCONT)
        stop(edge)
        stop(gateway.process)
