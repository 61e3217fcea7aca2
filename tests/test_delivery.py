"""Delivery under faults: what the gateway acknowledged is never lost, nothing applies twice.

Real gateway and edge processes on loopback; the gateway is killed with
SIGKILL, stopped with SIGSTOP, or started late.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    RunningGateway,
    edgeswarm_command,
    free_udp_port,
    start_gateway,
    stop_process,
)

pytestmark = pytest.mark.integration


def start_edge(
    gateway_port: int, ca: Path, token: str, data_dir: Path, *args: str
) -> subprocess.Popen[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    # stderr to a file: a full pipe would block the edge
    with (data_dir / "edge.log").open("w") as stderr:
        return subprocess.Popen(
            edgeswarm_command(
                "edge",
                "--edge-id",
                "edge-f",
                "--ca",
                str(ca),
                "--gateway",
                f"127.0.0.1:{gateway_port}",
                "--data-dir",
                str(data_dir),
                "--join-token",
                token,
                "--metrics-port",
                "-1",
                "--progress-interval",
                "0.2",
                "--batch-agents",
                "500",
                *args,
            ),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )


def read_lines(
    process: subprocess.Popen[str], timeout: float = 120
) -> tuple[list[dict[str, Any]], str]:
    stdout, _ = process.communicate(timeout=timeout)
    args = process.args
    assert isinstance(args, list)
    log = Path(args[args.index("--data-dir") + 1]) / "edge.log"
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return lines, log.read_text()


def logged_seqs(data_dir: Path, edge_id: str = "edge-f") -> list[int]:
    """Sequence numbers in the gateway's durable log, in arrival order."""
    with sqlite3.connect(data_dir / "observations.db") as db:
        rows = db.execute(
            "SELECT seq FROM batches WHERE edge_id = ? ORDER BY received_at, seq", (edge_id,)
        ).fetchall()
    return [int(r[0]) for r in rows]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


def logged_count(data_dir: Path) -> int:
    try:
        with sqlite3.connect(data_dir / "observations.db", timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM batches").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_kill_9_under_load_loses_nothing_acknowledged_and_applies_nothing_twice(
    tmp_path: Path,
) -> None:
    port = free_udp_port()
    gw_dir = tmp_path / "gw"
    gateway = start_gateway(gw_dir, port=port)
    edge = start_edge(
        port,
        gateway.ca,
        gateway.edge_token(),
        tmp_path / "edge",
        "--agents",
        "2000",
        "--ticks",
        "150",
        "--tick-hz",
        "50",
    )
    lines = JsonLines(edge)
    seen: list[dict[str, Any]] = []
    restarted = None
    try:
        wait_for(lambda: logged_count(gw_dir) >= 60)
        # Another connection holds the log's write lock (the gateway waits up to 5 s):
        # batches keep arriving and none can be committed, so none may be acknowledged.
        blocker = sqlite3.connect(gw_dir / "observations.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            for _ in range(3):  # ~0.6 s of the edge sending into a log that cannot commit
                seen.append(lines.next())
            gateway.process.send_signal(signal.SIGKILL)
            gateway.process.wait(10)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        killed = set(logged_seqs(gw_dir))
        acked_before_kill = max(line["batches_acked"] for line in seen)
        # Acknowledged means durable: every batch acknowledged before the kill is in the
        # log after it (acks are cumulative, so the edge's count is the highest seq acked).
        assert set(range(1, acked_before_kill + 1)) <= killed, (acked_before_kill, len(killed))
        tick_at_kill = seen[-1]["tick"]
        while (line := lines.next())["tick"] < tick_at_kill + 10:  # it steps and spools on
            seen.append(line)
        restarted = start_gateway(gw_dir, port=port)
        rest = lines.rest()
        edge.wait(30)
    finally:
        stop_process(edge)
        stop_process(gateway.process)
    stderr = (tmp_path / "edge" / "edge.log").read_text()
    try:
        summary = rest[-1]
        assert summary["event"] == "summary", stderr[-3000:]
        batches = 150 * 4
        assert summary["batches_sent"] == batches, stderr[-4000:]
        assert summary["batches_acked"] == batches, (summary, stderr[-3000:])
        assert summary["observations_acked"] == 150 * 2000
        assert summary["connects"] == 2  # the first gateway, then the restarted one
        assert edge.returncode == 0
        seqs = logged_seqs(gw_dir)
        assert len(killed) < batches
        assert sorted(seqs) == list(range(1, batches + 1))  # everything, each exactly once
        status = asyncio.run(restarted.status())
        [record] = status["edges"]
        assert record["observations"] == 150 * 2000  # applied once, rebuilt after the crash
        assert record["batches"] == batches
    finally:
        if restarted is not None:
            stop_process(restarted.process)


def test_edge_offline_then_back_replays_everything_in_order(tmp_path: Path) -> None:
    port = free_udp_port()
    gw_dir = tmp_path / "gw"
    gateway = start_gateway(gw_dir, port=port)
    token = gateway.edge_token()
    stop_process(gateway.process)  # the gateway goes away before the edge ever connects
    edge = start_edge(
        port,
        gateway.ca,
        token,
        tmp_path / "edge",
        "--agents",
        "1000",
        "--ticks",
        "40",
        "--tick-hz",
        "20",
        "--drain-timeout",
        "30",
    )
    reader = JsonLines(edge)
    lines: list[dict[str, Any]] = []
    restarted = None
    try:
        while not lines or lines[-1]["in_flight"] <= 10:  # offline: it steps and spools
            lines.append(reader.next())
            assert not lines[-1]["connected"]
        restarted = start_gateway(gw_dir, port=port)
        lines += reader.rest()
        edge.wait(30)
    finally:
        stop_process(edge)
    stderr = (tmp_path / "edge" / "edge.log").read_text()
    try:
        summary = lines[-1]
        assert summary["event"] == "summary", stderr[-3000:]
        assert summary["batches_sent"] == 40 * 2
        assert summary["batches_acked"] == 40 * 2
        offline = [
            line for line in lines if line.get("event") == "progress" and not line["connected"]
        ]
        assert offline, "the edge never reported being offline"
        assert max(line["in_flight"] for line in offline) > 10  # it spooled while offline
        assert "gateway unreachable" in stderr
        assert logged_seqs(gw_dir) == list(range(1, 81))  # replayed in order, each once
    finally:
        if restarted is not None:
            stop_process(restarted.process)


def test_an_edge_restarted_with_a_non_empty_spool_delivers_it_and_exits_0(
    tmp_path: Path,
) -> None:
    port = free_udp_port()
    gw_dir = tmp_path / "gw"
    gateway = start_gateway(gw_dir, port=port)
    token = gateway.edge_token()
    stop_process(gateway.process)  # down for the edge's whole first run
    first = start_edge(
        port, gateway.ca, token, tmp_path / "edge", "--agents", "1000", "--ticks", "3",
        "--tick-hz", "0", "--drain-timeout", "0.5",
    )  # fmt: skip
    lines, stderr = read_lines(first)
    assert first.returncode == 1, stderr[-2000:]  # unacknowledged: they stay spooled
    assert (lines[-1]["batches_sent"], lines[-1]["batches_acked"]) == (6, 0)
    assert lines[-1]["in_flight"] == 6
    assert "they stay spooled for the next start" in stderr
    restarted = start_gateway(gw_dir, port=port)
    try:
        second = start_edge(
            port, gateway.ca, token, tmp_path / "edge", "--agents", "1000", "--ticks", "2",
            "--tick-hz", "0",
        )  # fmt: skip
        lines, stderr = read_lines(second)
        summary = lines[-1]
        assert summary["event"] == "summary", stderr[-2000:]
        assert (summary["batches_sent"], summary["observations_sent"]) == (4, 2000)  # this run
        assert summary["batches_acked"] == 6 + 4  # the carried-over ones too
        assert summary["observations_acked"] == 5000
        assert summary["in_flight"] == 0
        assert second.returncode == 0, stderr[-2000:]  # nothing left unacknowledged
        assert logged_seqs(gw_dir) == list(range(1, 11))  # the old seqs first, each once
    finally:
        stop_process(restarted.process)


class JsonLines:
    """Reads a process's stdout JSON lines on a thread, so every read has a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._pump, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            if line.startswith("{"):
                self.queue.put(json.loads(line))
        self.queue.put(None)

    def next(self, timeout: float = 30.0) -> dict[str, Any]:
        record = self.queue.get(timeout=timeout)
        assert record is not None, "the process ended"
        return record

    def rest(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        out = []
        while (record := self.queue.get(timeout=timeout)) is not None:
            out.append(record)
        return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_stalled_gateway_bounds_edge_memory_and_overflow_is_observable(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    edge = start_edge(
        gateway.port,
        gateway.ca,
        gateway.edge_token(),
        tmp_path / "edge",
        "--agents",
        "4000",
        "--tick-hz",
        "50",
        "--duration",
        "9",
        "--spool-max-bytes",
        str(2 * 1024 * 1024),
        "--overflow",
        "drop_oldest",
        "--drain-timeout",
        "20",
    )
    lines = JsonLines(edge)
    try:
        assert lines.next()["event"] == "progress"
        wait_for(lambda: lines.next()["observations_acked"] > 0)
        os.kill(gateway.process.pid, signal.SIGSTOP)
        samples, progress = [], []
        for _ in range(15):  # ~3 s of the edge stepping against a frozen gateway
            progress.append(lines.next())
            samples.append(rss_kib(edge.pid))
        os.kill(gateway.process.pid, signal.SIGCONT)
        rest = lines.rest()
        edge.wait(30)
        stderr = (tmp_path / "edge" / "edge.log").read_text()
    finally:
        os.kill(gateway.process.pid, signal.SIGCONT)
        stop_process(edge)
    assert max(p["spooled_bytes"] for p in progress) <= 2 * 1024 * 1024
    assert progress[-1]["dropped_batches"] > progress[0]["dropped_batches"] >= 0
    assert progress[-1]["tick"] > progress[0]["tick"] + 10  # kept stepping while stalled
    growth = max(samples[5:]) - samples[5]
    assert growth < 20 * 1024, f"edge RSS grew {growth} KiB while the gateway was stalled"
    assert "spool full" in stderr.lower() or "dropp" in stderr.lower()
    summary = rest[-1]
    assert summary["event"] == "summary"
    dropped = summary["dropped_observations"]
    assert dropped > 0
    assert summary["observations_acked"] + dropped == summary["observations_sent"]


def spooled_seqs(data_dir: Path) -> list[int]:
    """Sequence numbers in an edge's spool index (held: spooled, not yet acknowledged)."""
    with sqlite3.connect(data_dir / "spool.db", timeout=5) as db:
        return [int(r[0]) for r in db.execute("SELECT seq FROM spool ORDER BY seq")]


def test_kill_9_of_the_edge_under_load_loses_nothing_acknowledged_or_spooled(
    tmp_path: Path,
) -> None:
    """The edge is killed (SIGKILL) while it ticks as fast as it is acknowledged, groups
    of batches being written to its segments: what the gateway acknowledged stays there,
    everything the spool committed is delivered after the restart, in one numbering
    with no gap, each batch once; a group torn by the kill is cut off at open."""
    gw_dir, edge_dir = tmp_path / "gw", tmp_path / "edge"
    gateway = start_gateway(gw_dir)
    token = gateway.edge_token(uses=2)
    restarted = None
    try:
        edge = start_edge(
            gateway.port, gateway.ca, token, edge_dir, "--agents", "4000", "--tick-hz", "0",
            "--duration", "120",
        )  # fmt: skip
        wait_for(lambda: logged_count(gw_dir) >= 400, timeout=60)
        edge.send_signal(signal.SIGKILL)
        edge.wait(10)
        assert edge.stdout is not None
        edge.stdout.close()
        acknowledged = set(logged_seqs(gw_dir))
        spooled = spooled_seqs(edge_dir)  # committed by the killed edge, not yet acked
        restarted = start_edge(
            gateway.port, gateway.ca, token, edge_dir, "--agents", "4000", "--ticks", "2",
        )  # fmt: skip
        lines, log = read_lines(restarted)
    finally:
        stop_process(gateway.process)
        if restarted is not None:
            stop_process(restarted)
    summary = lines[-1]
    assert summary["event"] == "summary", log[-3000:]
    assert restarted.returncode == 0, log[-3000:]
    assert summary["in_flight"] == 0
    assert summary["quarantined_batches"] == 0
    seqs = logged_seqs(gw_dir)
    assert len(seqs) == len(set(seqs))  # each once
    assert sorted(seqs) == list(range(1, max(seqs) + 1))  # no gap: nothing spooled was lost
    assert acknowledged <= set(seqs)
    assert set(spooled) <= set(seqs)
    assert max(seqs) >= max(acknowledged) + 2 * 8  # the restart's two ticks came after
