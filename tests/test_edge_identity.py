"""One edge id, one numbering: a deleted spool, a second process with the same key, a
cloned spool or a damaged one never make the gateway acknowledge what it did not store
(real gateway and edge processes on loopback; the gateway's log is read directly)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from .conftest import RunningGateway, stop_process
from .test_delivery import read_lines, start_edge

pytestmark = pytest.mark.integration

EDGE = "edge-f"
AGENTS = 500  # one batch of 500 observations per tick (--batch-agents 500)


def stored_observations(data_dir: Path, edge_id: str = EDGE) -> int:
    with sqlite3.connect(data_dir / "observations.db", timeout=10) as db:
        (total,) = db.execute(
            "SELECT coalesce(sum(count), 0) FROM batches WHERE edge_id = ?", (edge_id,)
        ).fetchone()
    return int(total)


def run_edge(
    gateway: RunningGateway, data_dir: Path, token: str, *args: str, status: int = 0
) -> dict[str, Any]:
    edge = start_edge(
        gateway.port, gateway.ca, token, data_dir, "--agents", str(AGENTS), "--tick-hz", "20", *args
    )
    lines, log = read_lines(edge)
    assert edge.returncode == status, log
    summary = lines[-1]
    assert summary["event"] == "summary", lines
    return summary


def test_an_edge_whose_spool_was_deleted_loses_nothing(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    """Before: the new spool restarted at seq 1, WELCOME's resume_seq released its 12
    new batches as already stored: 12 sent, 12 acked, 0 stored, exit 0. Now a new
    spool is a new seq_epoch with a base above everything the edge ever sent."""
    token = gateway.edge_token()
    data_dir = tmp_path / "edge"
    first = run_edge(gateway, data_dir, token, "--ticks", "12")
    assert first["observations_acked"] == 12 * AGENTS
    for name in ("spool.db", "spool.db-wal", "spool.db-shm"):
        (data_dir / name).unlink(missing_ok=True)  # the "obvious fix" of a broken spool
    second = run_edge(gateway, data_dir, token, "--ticks", "12")
    assert second["observations_acked"] == 12 * AGENTS
    assert stored_observations(gateway.data_dir) == 24 * AGENTS


def _concurrent(gateway: RunningGateway, dirs: list[Path], token: str) -> list[dict[str, Any]]:
    edges = [
        start_edge(
            gateway.port,
            gateway.ca,
            token,
            d,
            "--agents",
            str(AGENTS),
            "--tick-hz",
            "20",
            "--duration",
            "4",
            "--drain-timeout",
            "3",
        )
        for d in dirs
    ]
    summaries = []
    try:
        for edge in edges:
            lines, log = read_lines(edge)
            assert lines, log
            assert lines[-1]["event"] == "summary", log
            summaries.append(lines[-1])
    finally:
        for edge in edges:
            stop_process(edge)
    return summaries


@pytest.mark.parametrize("clone", [False, True], ids=["same-key", "cloned-spool"])
def test_two_processes_with_one_edge_id_are_never_deduplicated_silently(
    gateway: RunningGateway, tmp_path: Path, clone: bool
) -> None:
    """Two edge processes with the same id and key (a cloned SD card, with or without
    its spool): before, the second one's batches were acked as duplicates and never
    stored. Now the older session is replaced (counted), a stale or shared numbering is
    refused or moved to a new seq_epoch, and every acknowledged observation is stored."""
    token = gateway.edge_token()
    first, second = tmp_path / "first", tmp_path / "second"
    run_edge(gateway, first, token, "--ticks", "5")  # the original runs once
    if clone:
        shutil.copytree(first, second)  # key, spool and state, byte for byte
    else:
        second.mkdir()
        shutil.copy2(first / "edge.key", second / "edge.key")
    summaries = _concurrent(gateway, [first, second], token)
    acked = 5 * AGENTS + sum(s["observations_acked"] for s in summaries)
    sent = 5 * AGENTS + sum(s["observations_sent"] for s in summaries)
    # Every acknowledged observation is stored. A batch may also be stored whose ACK
    # never reached its edge (its session was replaced by the twin's, or the edge
    # stopped, between the commit and the ACK): it stays spooled for the next start.
    # So stored lies between acknowledged and sent, never outside.
    assert acked <= stored_observations(gateway.data_dir) <= sent
    log = gateway.log.read_text()
    assert "session replaced" in log or "STALE_SEQ_EPOCH" in log or "sequence conflict" in log
    for summary in summaries:  # what was not acknowledged stayed spooled or quarantined
        unacked = summary["observations_sent"] - summary["observations_acked"]
        assert unacked >= summary["quarantined_observations"] >= 0


def test_a_flipped_bit_in_a_spooled_batch_is_never_stored(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    """Before: a flipped bit in spool.db was sent, stored and acked. Now the batch fails
    its checksum before it leaves, is quarantined and counted; the rest is delivered."""
    token = gateway.edge_token()
    data_dir = tmp_path / "edge"
    # spool 12 batches while the gateway is unreachable (a port nobody listens on)
    offline = start_edge(
        1, gateway.ca, token, data_dir, "--agents", str(AGENTS), "--ticks", "12",
        "--drain-timeout", "0.5",
    )  # fmt: skip
    offline.communicate(timeout=120)
    db = sqlite3.connect(data_dir / "spool.db")
    (seq, segment, offset, length) = db.execute(
        "SELECT seq, segment, offset, length FROM spool ORDER BY seq LIMIT 1 OFFSET 5"
    ).fetchone()
    db.close()
    # its bytes are in a segment file beside the index
    with (data_dir / "spool.db-segments" / f"{segment:012d}.seg").open("r+b") as handle:
        handle.seek(offset + length // 2)
        byte = handle.read(1)[0]
        handle.seek(offset + length // 2)
        handle.write(bytes([byte ^ 0x10]))
    summary = run_edge(gateway, data_dir, token, "--ticks", "1", status=1)  # 1: one was lost
    assert summary["quarantined_batches"] == 1
    assert stored_observations(gateway.data_dir) == 12 * AGENTS  # 11 spooled + 1 new
    with sqlite3.connect(gateway.data_dir / "observations.db") as log_db:
        assert log_db.execute("SELECT 1 FROM batches WHERE seq = ?", (seq,)).fetchone() is None
    log = (data_dir / "edge.log").read_text()
    assert "quarantined" in log
