"""Scenarios that fill a disk: the gateway's (it must stop acknowledging, keep serving,
and recover when space returns) and the edge's (its spool's policy must hold: the tick
loop waits for room, as at the spool's bound, and nothing is lost or sent twice).

Each data directory is a small tmpfs mounted in the scenario's own mount namespace;
a filler file takes the free space and is deleted to give it back.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgeswarm.chaos.faults import fill_disk, mount_tmpfs, unmount
from edgeswarm.chaos.processes import (
    ProgressLines,
    start_edge,
    start_gateway,
    stop,
    tail,
)
from edgeswarm.chaos.verdict import delivery, finish, rate

LOAD = ("--agents", "1000", "--tick-hz", "50", "--drain-timeout", "90")
FULL_S = 3.0


def gateway_disk_full(work: Path) -> dict[str, Any]:
    """The gateway's data directory fills up under load for 3 s, then space returns."""
    disk = work / "gw"
    mount_tmpfs(disk, size_mib=256)
    try:
        gateway = start_gateway(disk, log=work / "gateway.log")
        edge = start_edge(f"127.0.0.1:{gateway.port}", gateway.ca, gateway.edge_token(),
                          work / "edge", *LOAD, "--ticks", "450")  # fmt: skip
        lines = ProgressLines(edge)
        try:
            start = lines.steady()
            full_from = time.monotonic()
            filler = fill_disk(disk)
            lines.for_seconds(1.0)  # what was committed before the disk filled is acked
            acked_full = lines.seen[-1]["batches_acked"]
            sent_full = lines.seen[-1]["batches_sent"]
            lines.for_seconds(FULL_S - 1.0)
            acked_still, sent_still = (
                lines.seen[-1]["batches_acked"],
                lines.seen[-1]["batches_sent"],
            )
            alive_while_full = gateway.process.poll() is None
            filler.unlink()
            freed_at = time.monotonic()
            lines.until(lambda line: line["batches_acked"] > acked_still, timeout=60)
            recovered_at = lines.seen[-1]["at"]
            rest = lines.rest()
            returncode = edge.wait(30)
            summary = rest[-1]
            figures = delivery(gateway, summary, returncode=returncode,
                               sent_batches=summary["batches_sent"])  # fmt: skip
            figures.update(
                throughput_before=rate(rest, start, full_from),
                throughput_during=rate(rest, full_from + 1.0, freed_at),
                throughput_after=rate(rest, recovered_at, rest[-2]["at"]),
                batches_acked_while_full=acked_still - acked_full,
                batches_sent_while_full=sent_still - sent_full,
                recovery_s=round(recovered_at - freed_at, 2),
            )
            if figures["failed_checks"]:
                figures["gateway_log"] = tail(work / "gateway.log", 600)
            return finish(
                "gateway_disk_full", figures,
                stopped_acking=acked_still == acked_full,
                kept_running=alive_while_full,
            )  # fmt: skip
        finally:
            stop(edge)
            stop(gateway.process)
    finally:
        unmount(disk)


def edge_disk_full(work: Path) -> dict[str, Any]:
    """The edge's data directory (its spool) fills up under load for 3 s, then space
    returns. The spool's policy for a disk without room (``edge/uplink.py``): the tick
    loop waits, as at the ``block`` bound, and goes on when there is room. Checked: the
    edge keeps running and stops stepping while full, says so and counts it; after the
    space returns it finishes its ticks and delivers every batch once, no gap, nothing
    quarantined."""
    disk = work / "edge"
    mount_tmpfs(disk, size_mib=64)
    try:
        gateway = start_gateway(work / "gw")
        target = f"127.0.0.1:{gateway.port}"
        edge = start_edge(target, gateway.ca, gateway.edge_token(), disk, *LOAD,
                          "--ticks", "450", log=work / "edge.log")  # fmt: skip
        lines = ProgressLines(edge)
        try:
            start = lines.steady()
            filler = fill_disk(disk)
            full_from = time.monotonic()
            try:
                time.sleep(FULL_S)  # no progress lines while the tick loop waits
                alive_while_full = edge.poll() is None
                tick_before = lines.seen[-1]["tick"]
                said = tail(work / "edge.log", 4000)
            finally:
                filler.unlink()
            freed_at = time.monotonic()
            lines.until(lambda line: line["at"] > freed_at and line["tick"] > tick_before)
            recovered_at = lines.seen[-1]["at"]
            rest = lines.rest()
            returncode = edge.wait(30)
            summary = rest[-1]
            figures = delivery(gateway, summary, returncode=returncode,
                               sent_batches=summary["batches_sent"])  # fmt: skip
            ticks_while_full = _ticks_between(rest, full_from + 1.0, freed_at)
            figures.update(
                throughput_before=rate(rest, start, full_from),
                throughput_after=rate(rest, recovered_at, rest[-2]["at"]),
                ticks_while_full=ticks_while_full,
                disk_full_waits=summary.get("spool_disk_full_waits"),
                recovery_s=round(recovered_at - freed_at, 2),
                quarantined_batches=summary.get("quarantined_batches"),
            )
            if figures["failed_checks"]:
                figures["edge_log"] = tail(work / "edge.log", 600)
            return finish(
                "edge_disk_full", figures,
                kept_running=alive_while_full,
                stepping_paused=ticks_while_full == 0,
                said_disk_full="spool disk full" in said,
                counted=bool(summary.get("spool_disk_full_waits")),
                nothing_quarantined=not summary.get("quarantined_batches"),
            )  # fmt: skip
        finally:
            stop(edge)
            stop(gateway.process)
    finally:
        unmount(disk)


def _ticks_between(lines: list[dict[str, Any]], since: float, until: float) -> int:
    """Ticks stepped between two moments, from the progress lines around them."""
    before = [line["tick"] for line in lines if line["at"] <= since]
    after = [line["tick"] for line in lines if line["at"] <= until]
    return (after[-1] - before[-1]) if before and after else -1
