"""Scenarios that fill a disk: the gateway's (it must stop acknowledging, keep serving,
and recover when space returns) and the edge's (its policy for a spool it cannot write
must hold: stop, keep what it committed, deliver it after the restart).

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
    logged_batches,
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
    """The edge's data directory (its spool) fills up under load. The edge's policy for
    a spool it cannot write (``edge/runner.py``): stop with one error line and exit 1,
    keeping every committed batch spooled. Checked: it stops so, saying the disk is full;
    started again once space returns, it delivers what it spooled, no gap, each batch
    once, nothing quarantined."""
    disk = work / "edge"
    mount_tmpfs(disk, size_mib=64)
    second = None
    try:
        gateway = start_gateway(work / "gw")
        token = gateway.edge_token(uses=2)
        target = f"127.0.0.1:{gateway.port}"
        first = start_edge(target, gateway.ca, token, disk, *LOAD, "--ticks", "450",
                           log=work / "edge.log")  # fmt: skip
        lines = ProgressLines(first)
        try:
            lines.until(lambda line: line["observations_acked"] > 0)
            filler = fill_disk(disk)
            full_at = time.monotonic()
            try:
                first_exit = first.wait(30)
            finally:
                stopped_s = time.monotonic() - full_at
                filler.unlink()
            sent_by_first = max(line["batches_sent"] for line in lines.seen)
            acknowledged = {seq for seq, _ in logged_batches(gateway.data_dir)}
            said = tail(work / "edge.log", 4000)
            second = start_edge(target, gateway.ca, token, disk, "--agents", "1000",
                                "--ticks", "2", "--drain-timeout", "60",
                                log=work / "edge.log")  # fmt: skip
            rest = ProgressLines(second).rest()
            returncode = second.wait(30)
            summary = rest[-1]
            stored = logged_batches(gateway.data_dir)
            sent = max(len(stored), sent_by_first + summary.get("batches_sent", 0))
            figures = delivery(gateway, summary, returncode=returncode, sent_batches=sent,
                               acknowledged=acknowledged)  # fmt: skip
            figures.update(
                stopped_after_full_s=round(stopped_s, 2),
                first_exit_code=first_exit,
                batches_acked_before_stop=len(acknowledged),
                batches_carried_over=summary.get("batches_carried_over"),
                quarantined_batches=summary.get("quarantined_batches"),
            )
            if figures["failed_checks"]:
                figures["edge_log"] = tail(work / "edge.log", 600)
            return finish(
                "edge_disk_full", figures,
                stopped_with_exit_1=first_exit == 1,
                said_disk_full="No space left" in said or "disk is full" in said,
                nothing_quarantined=not summary.get("quarantined_batches"),
            )  # fmt: skip
        finally:
            stop(first)
            if second is not None:
                stop(second)
            stop(gateway.process)
    finally:
        unmount(disk)
