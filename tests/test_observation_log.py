"""ObservationLog: group commit, dedup, restart, failures, kill -9 durability, corruption."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeswarm.gateway.log import (
    AppendResult,
    EdgeAggregate,
    FsyncPolicy,
    LogClosed,
    LogCorruptError,
    LogOpenError,
    LogOverloaded,
    LogRecord,
    LogRecordCorrupt,
    LogRecordRejected,
    LogSeqConflict,
    LogWriteError,
    ObservationLog,
)
from edgeswarm.gateway.log.index import checksum
from edgeswarm.storage.segments import writev_all as _writev_all

from .gateway_harness import WriterPlug

PAYLOAD = b"x" * 1000


def _rows(path: Path) -> set[tuple[str, int]]:
    """(edge, seq) pairs visible to an independent connection."""
    db = sqlite3.connect(path)
    try:
        return {(e, s) for e, s in db.execute("SELECT edge_id, seq FROM batches")}
    finally:
        db.close()


def _segment_sizes(path: Path) -> dict[str, int]:
    """Segment file name -> size, in name order."""
    directory = path.with_name(path.name + "-segments")
    return {p.name: p.stat().st_size for p in sorted(directory.iterdir())}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "obs.sqlite"


async def test_append_resolves_after_commit_and_is_visible(db_path: Path) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        result = await log.append("edge-a", 1, 10, 3, b"abc")
        assert result == AppendResult("edge-a", 1, applied=True)
        assert not result.duplicate
        # Visible from a separate connection the moment the future resolved.
        assert ("edge-a", 1) in _rows(db_path)
        assert log.pending_records == 0
        assert log.pending_bytes == 0
        mode = sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


class LoopTurns:
    """Counts turns of the running event loop until ``done`` is set."""

    def __init__(self) -> None:
        self.turn = 0
        self.done = asyncio.Event()

    async def run(self) -> None:
        while not self.done.is_set():
            self.turn += 1
            await asyncio.sleep(0)


async def test_append_then_runs_a_groups_callbacks_in_order_in_one_loop_turn(
    db_path: Path,
) -> None:
    calls: list[tuple[int, bool, int]] = []  # (seq, applied, loop turn)
    turns = LoopTurns()

    def on_done(outcome: AppendResult | BaseException) -> None:
        assert isinstance(outcome, AppendResult)
        assert ("e", outcome.seq) in _rows(db_path)  # committed before the callback
        calls.append((outcome.seq, outcome.applied, turns.turn))
        if outcome.seq == 1:
            raise RuntimeError("a caller's bug")  # logged; the others still run
        if len(calls) == 41:
            turns.done.set()

    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, max_group_records=64) as log:
        ticker = asyncio.create_task(turns.run())
        for seq in range(1, 41):
            log.append_then("e", seq, seq, 1, PAYLOAD, on_done)
        log.append_then("e", 7, 7, 1, PAYLOAD, on_done)  # a duplicate, reported too
        async with asyncio.timeout(10):
            await turns.done.wait()
        await ticker
        stats = log.stats
    assert [c[0] for c in calls] == [*range(1, 41), 7]
    assert [c[1] for c in calls] == [True] * 40 + [False]
    # One loop callback per group: as many distinct turns as groups, not as records.
    assert len({c[2] for c in calls}) <= stats.commits < 41


async def test_after_group_hooks_run_once_per_group_after_its_callbacks(db_path: Path) -> None:
    events: list[tuple[str, int]] = []  # ("done", seq) or ("hook A"/"hook B", turn)
    turns = LoopTurns()

    def on_done(outcome: AppendResult | BaseException) -> None:
        assert isinstance(outcome, AppendResult)
        events.append(("done", outcome.seq))

    def hook_a() -> None:
        events.append(("hook A", turns.turn))
        if sum(1 for kind, _ in events if kind == "done") == 30:
            turns.done.set()

    def hook_b() -> None:
        events.append(("hook B", turns.turn))
        raise RuntimeError("a caller's bug")  # logged; hook A still runs

    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, max_group_records=8) as log:
        ticker = asyncio.create_task(turns.run())
        for seq in range(1, 31):
            log.append_then("e", seq, seq, 1, PAYLOAD, on_done, hook_b if seq % 2 else hook_a)
        async with asyncio.timeout(10):
            await turns.done.wait()
        await ticker
        stats = log.stats
    assert [seq for kind, seq in events if kind == "done"] == list(range(1, 31))
    # Each group: its callbacks, then each distinct hook once (in first-queued order).
    hooks = [(kind, t) for kind, t in events if kind != "done"]
    assert len(hooks) == 2 * stats.commits
    assert [kind for kind, _ in hooks] == ["hook B", "hook A"] * stats.commits
    assert events[-1][0] == "hook A"
    positions = [i for i, (kind, _) in enumerate(events) if kind == "hook B"]
    for i in positions:  # a hook never runs before a callback of its own group
        assert events[i - 1][0] == "done"
    # Each group's two hooks ran in one loop turn.
    assert all(hooks[i][1] == hooks[i + 1][1] for i in range(0, len(hooks), 2))


async def test_every_future_sees_its_row_committed(db_path: Path) -> None:
    seen_missing: list[int] = []
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:

        async def one(seq: int) -> None:
            await log.append("e", seq, seq, 1, PAYLOAD)
            if ("e", seq) not in _rows(db_path):
                seen_missing.append(seq)

        await asyncio.gather(*(one(s) for s in range(1, 41)))
    assert seen_missing == []


async def test_group_commit_uses_fewer_commits_than_records(db_path: Path) -> None:
    n = 2000
    with ObservationLog(db_path, fsync=FsyncPolicy.ALWAYS) as log:
        futures = [log.append("edge-a", s, s, 5, PAYLOAD) for s in range(1, n + 1)]
        results = await asyncio.gather(*futures)
        stats = log.stats
    assert all(r.applied for r in results)
    assert stats.records == n
    assert stats.commits < n
    assert stats.max_group_records > 1
    assert stats.mean_group_records > 1
    assert stats.bytes == n * len(PAYLOAD)
    assert stats.last_commit_latency_s > 0


async def test_group_is_bounded_by_max_group_records(db_path: Path) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, max_group_records=7) as log:
        await asyncio.gather(*(log.append("e", s, 0, 1, b"p") for s in range(1, 101)))
        assert log.stats.max_group_records <= 7
        assert log.stats.records == 100


async def test_group_is_bounded_by_max_group_bytes(db_path: Path) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, max_group_bytes=3000) as log:
        await asyncio.gather(*(log.append("e", s, 0, 1, PAYLOAD) for s in range(1, 51)))
        assert log.stats.max_group_records <= 3
        assert log.count() == 50


async def test_duplicate_is_reported_not_applied(db_path: Path) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        first = await log.append("e", 1, 1, 4, b"first")
        again = await log.append("e", 1, 1, 4, b"first")  # resent: the same bytes
        # Two copies of the same batch in one group: one applied, one duplicate.
        a, b = await asyncio.gather(log.append("e", 2, 2, 4, b"x"), log.append("e", 2, 2, 4, b"x"))
        assert first.applied
        assert again.duplicate
        assert sorted([a.applied, b.applied]) == [False, True]
        assert [r.payload for r in log.read("e")] == [b"first", b"x"]
        assert log.edges()["e"] == EdgeAggregate("e", 2, 8, 6, 2, 2)
        assert log.stats.duplicates == 2
        assert log.count() == 2


def test_two_edges_with_the_same_seq_in_one_group_are_both_applied(db_path: Path) -> None:
    """Dedup is by (edge, seq): edge b's seq 1 is not a repeat of edge a's seq 1."""
    outcomes: list[AppendResult | BaseException] = []
    done = threading.Event()

    def on_done(outcome: AppendResult | BaseException) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 7:
            done.set()

    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        with WriterPlug(log) as plug:
            for edge, seq in [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("c", 2), ("a", 1)]:
                log.submit(LogRecord(edge, seq, seq, 3, f"{edge}{seq}".encode(), 0.0), on_done)
            # the same (edge, seq) and bytes twice in the group: the second is the duplicate
            # (other bytes would be a LogSeqConflict: a resend carries the same bytes)
            log.submit(LogRecord("c", 2, 2, 3, b"c2", 0.0), on_done)
        assert done.wait(10)
        stats = log.stats
        assert stats.last_group_records == 7  # all of them in one group, as arranged
        assert all(isinstance(o, AppendResult) for o in outcomes)
        applied = [
            (o.edge_id, o.seq) for o in outcomes if isinstance(o, AppendResult) and o.applied
        ]
        # in queue order; the repeats of (a, 1) and (c, 2) are reported as duplicates
        assert applied == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("c", 2)]
        assert stats.applied == 1 + 5  # the plug, then one of each (edge, seq)
        assert stats.duplicates == 2
        assert [r.payload for r in log.read("b")] == [b"b1", b"b2"]
        assert [r.payload for r in log.read("c")] == [b"c2"]
        assert {e: a.batches for e, a in log.edges().items()} == {
            plug.edge_id: 1,
            "a": 2,
            "b": 2,
            "c": 1,
        }
    # the repeats' payloads were never written: the segment holds each payload once
    segment = _segment_sizes(db_path)["000000000001.seg"]
    assert segment == len(b"plug") + sum(len(p) for p in (b"a1", b"b1", b"a2", b"b2", b"c2"))
    assert _rows(db_path) == {
        (plug.edge_id, 1),
        ("a", 1),
        ("a", 2),
        ("b", 1),
        ("b", 2),
        ("c", 2),
    }


async def test_restart_keeps_records_and_rebuilds_aggregates(db_path: Path) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.NORMAL) as log:
        seqs = [1, 2, 3, 5, 6, 9]
        await asyncio.gather(*(log.append("a", s, s * 10, 2, b"ab") for s in seqs))
        await asyncio.gather(*(log.append("b", s, s, 1, b"q") for s in range(1, 4)))
        before = log.edges()
        assert log.high_water("a") == 3
    with ObservationLog(db_path) as log:
        assert log.edges() == before
        assert log.edges()["a"] == EdgeAggregate("a", 6, 12, 12, 9, 3)
        assert log.edges()["b"] == EdgeAggregate("b", 3, 3, 3, 3, 3)
        assert log.high_water("a") == 3
        assert log.high_water("nobody") == 0
        assert log.count() == 9
        recs = list(log.read("a", from_seq=5))
        assert [(r.seq, r.tick, r.count, r.payload) for r in recs] == [
            (5, 50, 2, b"ab"),
            (6, 60, 2, b"ab"),
            (9, 90, 2, b"ab"),
        ]
        assert all(isinstance(r, LogRecord) and r.received_at > 0 for r in recs)
        # Filling the gap advances the contiguous high-water mark past stored seqs.
        await log.append("a", 4, 40, 2, b"ab")
        assert log.high_water("a") == 6
        await asyncio.gather(*(log.append("a", s, 0, 2, b"ab") for s in (7, 8)))
        assert log.high_water("a") == 9
        assert log.edges()["a"].max_seq == 9


async def test_write_failure_fails_every_waiter_of_the_group(db_path: Path) -> None:
    """A real commit failure: another connection holds the write lock past the timeout."""
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, busy_timeout_s=0.2) as log:
        await log.append("e", 1, 0, 1, b"ok")
        blocker = sqlite3.connect(db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            futures = [log.append("e", s, 0, 1, b"p") for s in range(2, 12)]
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
            # a commit waits busy_timeout_s for the lock (per group), not SQLite's 5 s default
            assert time.monotonic() - started < 4.0
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert all(isinstance(o, LogWriteError) for o in outcomes)
        assert isinstance(outcomes[0], LogWriteError)
        assert isinstance(outcomes[0].__cause__, sqlite3.OperationalError)
        assert _rows(db_path) == {("e", 1)}
        # The failed groups' payloads were appended, then cut off again.
        assert _segment_sizes(db_path) == {"000000000001.seg": 2}
        stats = log.stats
        assert stats.failed_records == 10
        assert stats.failed_commits >= 1
        assert log.pending_records == 0
        assert log.high_water("e") == 1
        # The log recovers once the lock is gone; the edge's resend is applied.
        results = await asyncio.gather(*(log.append("e", s, 0, 1, b"p") for s in range(2, 12)))
        assert all(r.applied for r in results)
        assert log.high_water("e") == 11
        assert _segment_sizes(db_path) == {"000000000001.seg": 12}
        assert [r.payload for r in log.read("e")] == [b"ok"] + [b"p"] * 10


def test_submit_callback_api_from_threads(db_path: Path) -> None:
    outcomes: list[AppendResult | BaseException] = []
    done = threading.Event()
    lock = threading.Lock()

    def on_done(outcome: AppendResult | BaseException) -> None:
        with lock:
            outcomes.append(outcome)
            if len(outcomes) == 200:
                done.set()

    def producer(edge: str) -> None:
        for s in range(1, 101):
            log.submit(LogRecord(edge, s, s, 1, b"z", 0.0), on_done)

    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        threads = [threading.Thread(target=producer, args=(e,)) for e in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert done.wait(10)
        assert all(isinstance(o, AppendResult) and o.applied for o in outcomes)
        assert {e: a.high_water for e, a in log.edges().items()} == {"a": 100, "b": 100}


async def test_close_drains_queue_and_rejects_later_appends(db_path: Path) -> None:
    log = ObservationLog(db_path, fsync=FsyncPolicy.OFF)
    futures = [log.append("e", s, 0, 1, PAYLOAD) for s in range(1, 301)]
    log.close()  # blocks until everything queued is committed
    assert len(_rows(db_path)) == 300
    results = await asyncio.gather(*futures)
    assert all(r.applied for r in results)
    log.close()  # idempotent
    with pytest.raises(LogClosed):
        log.append("e", 301, 0, 1, b"")


async def test_max_pending_bytes_raises_overloaded(db_path: Path) -> None:
    # The writer is held on a lock, so nothing drains while we queue.
    with ObservationLog(
        db_path, fsync=FsyncPolicy.OFF, max_pending_bytes=5 * len(PAYLOAD), busy_timeout_s=5
    ) as log:
        blocker = sqlite3.connect(db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            futures = [log.append("e", s, 0, 1, PAYLOAD) for s in range(1, 6)]
            assert log.pending_records == 5
            assert log.pending_bytes == 5 * len(PAYLOAD)
            with pytest.raises(LogOverloaded):
                log.append("e", 6, 0, 1, PAYLOAD)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert all(r.applied for r in await asyncio.gather(*futures))
        assert log.pending_bytes == 0


def test_corrupt_file_raises_log_corrupt_error(db_path: Path) -> None:
    db_path.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(LogCorruptError) as info:
        ObservationLog(db_path)
    assert info.value.path == db_path
    assert str(db_path) in str(info.value)


def test_foreign_sqlite_database_raises_log_corrupt_error(db_path: Path) -> None:
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE something_else (x)")
    db.commit()
    db.close()
    with pytest.raises(LogCorruptError):
        ObservationLog(db_path)


_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from edgeswarm.gateway.log.store import ObservationLog

    async def main() -> None:
        log = ObservationLog(sys.argv[1], fsync="normal")
        window = asyncio.Semaphore(256)  # like the gateway's credit: bounded in flight

        async def one(seq: int) -> None:
            try:
                await log.append("edge", seq, seq, 8, os.urandom(20_000))
                print(seq, flush=True)  # the ACK
            finally:
                window.release()

        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(sys.argv[2])
        seq = 0
        while loop.time() < deadline:
            await window.acquire()
            seq += 1
            asyncio.ensure_future(one(seq))
        os._exit(0)  # like kill -9: no close(), appends still queued and in flight

    asyncio.run(main())
    """
)


@pytest.mark.integration
def test_acked_records_survive_process_kill(db_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(db_path), "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    acked = {int(line) for line in proc.stdout.split()}
    assert acked, proc.stderr
    with ObservationLog(db_path) as log:
        stored = {r.seq for r in log.read("edge")}
        assert acked <= stored
        assert log.count() == len(stored)
        # Appends were issued in seq order and none failed: no gaps below what was acked.
        assert log.edges()["edge"].high_water >= max(acked)


async def test_checkpoints_run_off_the_writer_and_the_wal_stays_bounded(db_path: Path) -> None:
    limit = 256 << 10
    with ObservationLog(
        db_path, fsync=FsyncPolicy.NORMAL, checkpoint_commits=8, wal_limit_bytes=limit
    ) as log:
        payload = os.urandom(1000)
        n = 1500
        for seq in range(1, n + 1):  # one commit each: a few index pages in the WAL
            await log.append("e", seq, seq, 8, payload)
        wal = db_path.with_name(db_path.name + "-wal")
        stats = log.stats
        assert stats.commits == n
        assert stats.wal_restarts >= 1
        assert stats.checkpoints > stats.wal_restarts  # the checkpointer thread ran some
        assert stats.failed_checkpoints == 0
        # Without checkpoints these commits leave a 12 MB WAL. Restarted WALs are
        # reused and truncated to the limit; the writer notices a WAL file past the
        # limit after the commit that grew it and restarts it before the next one.
        assert wal.stat().st_size < 2 * limit
        assert log.high_water("e") == n
    with ObservationLog(db_path) as log:
        assert [r.seq for r in log.read("e")] == list(range(1, n + 1))


async def test_the_wal_stays_bounded_when_the_checkpointer_never_runs(db_path: Path) -> None:
    """The checkpointer runs at nice 19; under a competing CPU load it may not run at
    all for a while. Here it is never woken: the writer alone must bound the WAL."""
    limit = 256 << 10
    with ObservationLog(
        db_path, fsync=FsyncPolicy.NORMAL, checkpoint_commits=10**9, wal_limit_bytes=limit
    ) as log:
        payload = os.urandom(1000)
        n = 1500
        for seq in range(1, n + 1):
            await log.append("e", seq, seq, 8, payload)
        stats = log.stats
        assert stats.checkpoints == stats.wal_restarts >= 1  # all of them the writer's
        assert stats.wal_restarts <= n // 20  # only when the WAL is past its limit
        assert db_path.with_name(db_path.name + "-wal").stat().st_size < 2 * limit
    with ObservationLog(db_path) as log:
        assert [r.seq for r in log.read("e")] == list(range(1, n + 1))


async def test_a_callbacks_or_hooks_exception_is_logged_with_its_traceback(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    done = asyncio.Event()

    def bad_callback(outcome: AppendResult | BaseException) -> None:
        raise RuntimeError("callback bug")

    def bad_hook() -> None:
        done.set()
        raise RuntimeError("hook bug")

    with (
        ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log,
        caplog.at_level(logging.ERROR, logger="edgeswarm.gateway"),
    ):
        log.append_then("e", 1, 0, 1, b"p", bad_callback, bad_hook)
        async with asyncio.timeout(10):
            await done.wait()
    records = [(r.name, r.getMessage(), str(r.exc_info[1])) for r in caplog.records if r.exc_info]
    assert records == [
        ("edgeswarm.gateway", "observation log callback failed", "callback bug"),
        ("edgeswarm.gateway", "observation log hook failed", "hook bug"),
    ]


def test_open_errors_name_the_file_and_what_is_wrong(db_path: Path) -> None:
    db_path.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(LogCorruptError) as corrupt:
        ObservationLog(db_path)
    assert str(corrupt.value) == f"{db_path}: not a usable database (file is not a database)"
    nowhere = db_path.parent / "no" / "such" / "obs.sqlite"
    with pytest.raises(LogOpenError) as info:
        ObservationLog(nowhere)
    assert type(info.value) is LogOpenError  # not "corrupt": the file is merely missing
    assert info.value.path == nowhere
    assert str(info.value) == f"{nowhere}: cannot create {nowhere}: No such file or directory"


def test_new_logs_use_rowid_table_4k_pages_and_schema_4(db_path: Path) -> None:
    ObservationLog(db_path).close()
    assert db_path.with_name(db_path.name + "-segments").is_dir()
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert db.execute("PRAGMA user_version").fetchone()[0] == 4
        sql = db.execute("SELECT sql FROM sqlite_schema WHERE name = 'batches'").fetchone()[0]
        assert "WITHOUT ROWID" not in sql
        columns = [r[1] for r in db.execute("PRAGMA table_info(batches)")]
        assert columns[-5:] == ["segment", "offset", "length", "xxh3", "row_xxh3"]
    finally:
        db.close()


@pytest.mark.parametrize(("version", "storage"), [(1, "WITHOUT ROWID"), (2, "")])
async def test_version_1_logs_still_open_and_append(
    db_path: Path, version: int, storage: str
) -> None:
    """Versions 1 and 2 (inline payloads) are upgraded in place; old rows stay inline."""
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE batches (edge_id TEXT NOT NULL, seq INTEGER NOT NULL, tick INTEGER NOT"
        " NULL, count INTEGER NOT NULL, payload BLOB NOT NULL, received_at REAL NOT NULL,"
        f" PRIMARY KEY (edge_id, seq)) {storage}"
    )
    db.execute("INSERT INTO batches VALUES ('e', 1, 1, 1, x'00', 0.0)")
    db.execute(f"PRAGMA user_version={version}")
    db.close()
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        assert log.high_water("e") == 1
        assert log.edges()["e"].bytes == 1
        assert (await log.append("e", 2, 2, 1, b"p")).applied
        assert not (await log.append("e", 1, 1, 1, b"\x00")).applied
        assert [(r.seq, r.payload) for r in log.read("e")] == [(1, b"\x00"), (2, b"p")]
        assert log.edges()["e"].bytes == 2
    assert _rows(db_path) == {("e", 1), ("e", 2)}
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 4
        rows = db.execute("SELECT seq, payload, segment, length FROM batches ORDER BY seq")
        assert rows.fetchall() == [(1, b"\x00", None, None), (2, b"", 1, 1)]
    finally:
        db.close()
    with ObservationLog(db_path) as log:  # and reopens as version 4
        assert log.edges()["e"] == EdgeAggregate("e", 2, 2, 2, 2, 2)
        assert [r.payload for r in log.read("e")] == [b"\x00", b"p"]


# --------------------------------------------------------------------------- segments


async def test_payloads_live_in_segments_not_in_the_database(db_path: Path) -> None:
    payloads = [os.urandom(n) for n in (1, 700, 20_600, 3)] + [b""]
    with ObservationLog(db_path, fsync=FsyncPolicy.ALWAYS) as log:
        await asyncio.gather(
            *(log.append("e", s, s, 1, p) for s, p in enumerate(payloads, start=1))
        )
        assert [r.payload for r in log.read("e")] == payloads
        assert log.edges()["e"].bytes == sum(map(len, payloads))
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute(
            "SELECT seq, length(payload), segment, offset, length, xxh3 FROM batches ORDER BY seq"
        ).fetchall()
    finally:
        db.close()
    offset = 0
    for (seq, inline, segment, at, length, xxh3), payload in zip(rows, payloads[:-1], strict=False):
        assert (inline, segment, at, length, xxh3) == (
            0,
            1,
            offset,
            len(payload),
            checksum(payload),
        ), seq
        offset += len(payload)
    assert rows[-1] == (5, 0, None, None, None, None)  # nothing to separate: inline x''
    assert _segment_sizes(db_path) == {"000000000001.seg": offset}
    with ObservationLog(db_path) as log:
        assert [r.payload for r in log.read("e")] == payloads
        assert log.edges()["e"].bytes == sum(map(len, payloads))


async def test_segments_roll_over_at_segment_bytes(db_path: Path) -> None:
    payloads = [os.urandom(300) for _ in range(20)]
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, segment_bytes=1000) as log:
        for seq, payload in enumerate(payloads, start=1):  # one group each
            await log.append("e", seq, seq, 1, payload)
        assert [r.payload for r in log.read("e")] == payloads
        assert [r.payload for r in log.read("e", from_seq=4)] == payloads[3:]
    # A new segment once the current one passed 1000 bytes: 4 records each.
    assert _segment_sizes(db_path) == {f"{n:012d}.seg": 1200 for n in range(1, 6)}
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, segment_bytes=1000) as log:
        more = [os.urandom(300) for _ in range(2)]
        await asyncio.gather(*(log.append("e", 21 + i, 0, 1, p) for i, p in enumerate(more)))
        assert [r.payload for r in log.read("e")] == payloads + more
    assert _segment_sizes(db_path)["000000000006.seg"] == 600
    assert len(_segment_sizes(db_path)) == 6


async def test_uncommitted_segment_bytes_are_cut_off_at_open(db_path: Path) -> None:
    """A group killed between writev and COMMIT leaves bytes no row points at."""
    payloads = [os.urandom(500) for _ in range(10)]
    with ObservationLog(db_path, fsync=FsyncPolicy.NORMAL, segment_bytes=4000) as log:
        await asyncio.gather(*(log.append("e", s, s, 1, p) for s, p in enumerate(payloads, 1)))
    committed = _segment_sizes(db_path)
    newest = db_path.with_name(db_path.name + "-segments") / max(committed)
    with newest.open("ab") as f:
        f.write(os.urandom(12_345))
    # ...or the crashed group had just started a new segment.
    (newest.parent / "000000000099.seg").write_bytes(b"junk")
    with ObservationLog(db_path, fsync=FsyncPolicy.NORMAL, segment_bytes=4000) as log:
        assert _segment_sizes(db_path) == committed
        assert log.stats.lost_on_open == 0
        assert [r.payload for r in log.read("e")] == payloads
        assert (await log.append("e", 11, 11, 1, b"after")).applied
        assert [r.payload for r in log.read("e", from_seq=10)] == [payloads[-1], b"after"]
    with ObservationLog(db_path) as log:
        assert log.high_water("e") == 11
        assert [r.payload for r in log.read("e")] == [*payloads, b"after"]


async def test_rows_behind_a_short_segment_are_dropped_at_open(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An OS crash under fsync=normal can keep rows whose segment bytes were lost."""
    payloads = [os.urandom(1000) for _ in range(10)]
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        await asyncio.gather(*(log.append("e", s, s, 2, p) for s, p in enumerate(payloads, 1)))
        await log.append("other", 1, 1, 1, b"k")  # after them in the segment
    segment = db_path.with_name(db_path.name + "-segments") / "000000000001.seg"
    with segment.open("r+b") as f:
        f.truncate(5500)  # records 1-5 whole, 6 cut in half, 7-10 gone
    with caplog.at_level("WARNING", logger="edgeswarm.gateway"):
        log = ObservationLog(db_path, fsync=FsyncPolicy.OFF)
    with log:
        assert log.stats.lost_on_open == 6
        assert log.high_water("e") == 5
        assert log.edges() == {"e": EdgeAggregate("e", 5, 10, 5000, 5, 5)}
        assert log.high_water("other") == 0
        assert [r.payload for r in log.read("e")] == payloads[:5]
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1
        assert warnings[0].name == "edgeswarm.gateway"
        assert warnings[0].lost == 6  # type: ignore[attr-defined]
        # The cut-off half of record 6 was dropped too; the edge's resend is applied.
        assert _segment_sizes(db_path) == {"000000000001.seg": 5000}
        assert (await log.append("e", 6, 6, 2, payloads[5])).applied
        assert [r.payload for r in log.read("e")] == payloads[:6]
    with ObservationLog(db_path) as log:
        assert log.stats.lost_on_open == 0
        assert log.high_water("e") == 6


async def test_rows_of_a_missing_segment_are_dropped_at_open(db_path: Path) -> None:
    payloads = [os.urandom(600) for _ in range(6)]
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, segment_bytes=1000) as log:
        for seq, payload in enumerate(payloads, start=1):  # 2 records per segment
            await log.append("e", seq, seq, 1, payload)
    assert len(_segment_sizes(db_path)) == 3
    (db_path.with_name(db_path.name + "-segments") / "000000000002.seg").unlink()
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, segment_bytes=1000) as log:
        assert log.stats.lost_on_open == 2
        assert log.high_water("e") == 2
        assert log.edges()["e"].max_seq == 6
        assert [r.seq for r in log.read("e")] == [1, 2, 5, 6]
        assert all(r.payload == payloads[r.seq - 1] for r in log.read("e"))


async def test_damaged_payload_raises_log_record_corrupt(db_path: Path) -> None:
    payloads = [os.urandom(100) for _ in range(3)]
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        await asyncio.gather(*(log.append("e", s, s, 1, p) for s, p in enumerate(payloads, 1)))
        segment = db_path.with_name(db_path.name + "-segments") / "000000000001.seg"
        with segment.open("r+b") as f:
            f.seek(150)  # inside seq 2
            byte = f.read(1)
            f.seek(150)
            f.write(bytes([byte[0] ^ 0x01]))
        with pytest.raises(LogRecordCorrupt) as info:
            list(log.read("e"))
        error = info.value
        assert (error.edge_id, error.seq, error.segment, error.offset) == ("e", 2, 1, 100)
        assert "'e' seq 2" in str(error)
        assert "segment 1, offset 100" in str(error)
        # The records around it stay readable.
        assert next(iter(log.read("e"))).payload == payloads[0]
        assert [r.payload for r in log.read("e", from_seq=3)] == [payloads[2]]


async def test_known_duplicates_do_not_grow_the_segment(db_path: Path) -> None:
    seqs = [-3, 0, 1, 2, 3, 7]  # below 1 and past a gap are tracked as exactly as 1..n
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        await asyncio.gather(*(log.append("e", s, s, 1, PAYLOAD) for s in seqs))
        size = _segment_sizes(db_path)
        assert size == {"000000000001.seg": len(seqs) * len(PAYLOAD)}
        again = await asyncio.gather(*(log.append("e", s, s, 1, PAYLOAD) for s in seqs * 2))
        assert not any(r.applied for r in again)
        assert _segment_sizes(db_path) == size
        assert log.stats.duplicates == 2 * len(seqs)
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:  # state rebuilt from the db
        again = await asyncio.gather(*(log.append("e", s, s, 1, PAYLOAD) for s in seqs))
        assert not any(r.applied for r in again)
        assert (await log.append("e", 4, 4, 1, b"z")).applied
        assert _segment_sizes(db_path) == {"000000000001.seg": len(seqs) * len(PAYLOAD) + 1}
        assert all(r.payload == PAYLOAD for r in log.read("e") if r.seq != 4)


async def test_a_different_batch_under_a_stored_number_is_a_conflict(db_path: Path) -> None:
    """Two senders with the same (edge, seq) numbers (a cloned or restored spool): the
    second batch is not acknowledged as a duplicate, it is a LogSeqConflict."""
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        await log.append("e", 1, 1, 4, b"first")
        with pytest.raises(LogSeqConflict):
            await log.append("e", 1, 1, 4, b"other")
        same, other = await asyncio.gather(
            log.append("e", 2, 2, 4, b"x"), log.append("e", 2, 2, 4, b"y"), return_exceptions=True
        )
        assert isinstance(same, AppendResult)
        assert same.applied
        assert isinstance(other, LogSeqConflict)
        assert (await log.append("e", 1, 1, 4, b"first")).duplicate  # a true resend is fine
        assert [r.payload for r in log.read("e")] == [b"first", b"x"]
    with (
        ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log,  # after a restart too
        pytest.raises(LogSeqConflict),
    ):
        await log.append("e", 2, 2, 4, b"z")


def test_second_writer_on_the_same_log_is_refused(db_path: Path) -> None:
    with ObservationLog(db_path), pytest.raises(LogOpenError, match="in use"):
        ObservationLog(db_path)
    ObservationLog(db_path).close()  # the lock goes with close()


def test_writev_all_splits_at_iov_max(tmp_path: Path) -> None:
    buffers = [os.urandom(1 + i % 7) for i in range(3 * os.sysconf("SC_IOV_MAX") + 5)]
    buffers[10] = b""
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        assert _writev_all(fd, buffers) == sum(map(len, buffers))
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(buffers)


async def test_a_record_that_cannot_be_stored_fails_alone(db_path: Path) -> None:
    """A record SQLite refuses (a lone surrogate in its edge id cannot be bound) is
    rejected alone; the records of its group commit and are acknowledged."""
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, busy_timeout_s=10) as log:
        await log.append("good", 1, 0, 1, b"a")
        blocker = sqlite3.connect(db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the writer waits on the lock meanwhile,
        try:  # so the records queued behind `first` form one group (with it or after it)
            first = log.append("good", 2, 0, 1, b"b")
            futures = [
                log.append("good", 3, 0, 1, b"c"),
                log.append("bad\ud800", 1, 0, 1, b"x"),
                log.append("other", 1, 0, 1, b"d"),
            ]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        outcomes = await asyncio.gather(first, *futures, return_exceptions=True)
        assert [type(o) for o in outcomes] == [
            AppendResult,
            AppendResult,
            LogRecordRejected,
            AppendResult,
        ]
        rejected = outcomes[2]
        assert isinstance(rejected, LogRecordRejected)
        assert rejected.seq == 1
        assert _rows(db_path) == {("good", 1), ("good", 2), ("good", 3), ("other", 1)}
        assert log.pending_records == 0


@pytest.mark.parametrize("field", ["seq", "tick", "count"])
async def test_out_of_range_values_are_rejected_before_they_are_queued(
    db_path: Path, field: str
) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        values = {"seq": 1, "tick": 0, "count": 1, field: 2**63}
        with pytest.raises(LogRecordRejected, match=field):
            log.append("e", values["seq"], values["tick"], values["count"], b"p")
        assert log.pending_records == 0
        assert (await log.append("e", 1, 0, 1, b"p")).applied


async def test_sequence_epochs_keep_numberings_apart_across_restarts(db_path: Path) -> None:
    """An edge's new spool is a new epoch: its numbers are stored above everything the
    edge ever queued, the older epoch becomes stale, and all of it survives a restart."""
    from edgeswarm.gateway.log import EpochStanding

    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        assert log.epoch_standing("e", 0) is EpochStanding.CURRENT  # an edge without epochs
        for seq in (1, 2, 3, 5):  # a gap at 4
            await log.append("e", seq, seq, 1, b"old")
        assert log.epoch_standing("e", 77) is EpochStanding.NEW
        base = log.open_epoch("e", 77)
        assert base == 5
        assert log.high_water("e", base) == base  # resume_seq 0 in the new epoch
        for seq in (1, 2):
            await log.append("e", base + seq, seq, 1, b"new")
        assert log.high_water("e", base) == base + 2
        assert log.high_water("e") == 3  # the old run keeps its gap
        assert log.epoch_standing("e", 0) is EpochStanding.STALE
        assert log.epoch_standing("e", 77) is EpochStanding.CURRENT
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        assert log.epoch_standing("e", 77) is EpochStanding.CURRENT
        assert log.open_epoch("e", 77) == base
        assert log.high_water("e", base) == base + 2
        assert not (await log.append("e", base + 2, 2, 1, b"new")).applied  # a resend
        assert (await log.append("e", 4, 4, 1, b"old")).applied  # the old gap, late
        assert log.edges()["e"].batches == 7


# ------------------------------------------------- what the survivors of mutation asked for


async def test_reading_names_each_damage_and_holds_no_descriptor(db_path: Path) -> None:
    payloads = [os.urandom(600) for _ in range(6)]
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, segment_bytes=1000) as log:
        for seq, payload in enumerate(payloads, start=1):  # 2 records per segment
            await log.append("e", seq, seq * 10, 3, payload)
        list(log.read("e"))  # SQLite keeps one descriptor of the file for reuse: warm up
        fds = len(os.listdir("/proc/self/fd"))
        records = list(log.read("e"))
        assert len(os.listdir("/proc/self/fd")) == fds  # every segment it opened, closed
        assert [(r.edge_id, r.seq, r.tick, r.count) for r in records] == [
            ("e", s, s * 10, 3) for s in range(1, 7)
        ]
        segments = db_path.with_name(db_path.name + "-segments")
        (segments / "000000000002.seg").unlink()  # gone while the log is open
        with pytest.raises(LogRecordCorrupt) as missing:
            list(log.read("e"))
        error = missing.value
        assert (error.edge_id, error.seq, error.segment, error.offset) == ("e", 3, 2, 0)
        assert error.path == segments / "000000000002.seg"
        assert str(error).endswith(": segment file missing")
        with (segments / "000000000003.seg").open("r+b") as f:
            f.truncate(900)  # record 6 (offset 600) is cut to 300 bytes
        with pytest.raises(LogRecordCorrupt) as short:
            list(log.read("e", from_seq=5))
        assert (short.value.seq, short.value.path) == (6, segments / "000000000003.seg")
        assert str(short.value).endswith(": 300 of 600 bytes")


async def test_a_damaged_payload_is_named_a_checksum_mismatch(db_path: Path) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        await log.append("e", 1, 1, 1, b"abcdef")
        segment = db_path.with_name(db_path.name + "-segments") / "000000000001.seg"
        segment.write_bytes(b"abcdeX")
        with pytest.raises(LogRecordCorrupt) as info:
            list(log.read("e"))
        assert info.value.path == segment
        assert str(info.value).endswith(": checksum mismatch")


async def test_read_starts_below_one_by_default_and_inline_rows_keep_their_fields(
    db_path: Path,
) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        for seq in (-3, 0, 1, 2):
            await log.append("e", seq, seq + 100, 4, b"" if seq == 1 else b"p")
        records = list(log.read("e"))
    assert [r.seq for r in records] == [0, 1, 2]  # from_seq=0: seq 0 on, not below
    [inline] = [r for r in records if r.seq == 1]  # an empty payload stays in the row
    assert (inline.edge_id, inline.tick, inline.count, inline.payload) == ("e", 101, 4, b"")
    assert inline.received_at == pytest.approx(time.time(), abs=60)


async def test_a_key_another_connection_wrote_is_not_reported_as_ours(db_path: Path) -> None:
    """INSERT OR IGNORE skips a key someone else wrote (a restore, a second writer); the
    log tells, row by row, which of its group's rows it wrote itself."""
    outcomes: list[AppendResult | BaseException] = []
    done = threading.Event()

    def on_done(outcome: AppendResult | BaseException) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 3:
            done.set()

    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        other = sqlite3.connect(db_path)
        other.execute(
            "INSERT INTO batches (edge_id, seq, tick, count, payload, received_at)"
            " VALUES ('e', 2, 2, 1, x'6f74686572', 1.0)"
        )
        other.commit()
        other.close()
        with WriterPlug(log):
            for seq in (1, 2, 3):  # one group; the log does not know about seq 2
                log.submit(LogRecord("e", seq, seq * 10, 1, b"mine", 0.0), on_done)
        assert done.wait(10)
        assert [(o.seq, o.applied) for o in outcomes if isinstance(o, AppendResult)] == [
            (1, True),
            (2, False),
            (3, True),
        ]
        assert [r.payload for r in log.read("e")] == [b"mine", b"other", b"mine"]
        assert log.edges()["e"].batches == 2  # what this log applied


async def test_failed_groups_are_counted_one_by_one(db_path: Path) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, busy_timeout_s=0.2) as log:
        plug = WriterPlug(log).hold()  # its own record commits before the lock is taken
        blocker = sqlite3.connect(db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            first = [log.append("e", s, 0, 1, b"pp") for s in (1, 2, 3)]
            plug.release()  # 1, 2, 3: one group, failed
            assert all(isinstance(r, LogWriteError) for r in await asyncio.gather(
                *first, return_exceptions=True))  # fmt: skip
            with WriterPlug(log):  # this plug's own group fails too: 1 record
                second = [log.append("e", s, 0, 1, b"ppp") for s in (4, 5)]
            outcomes = await asyncio.gather(*second, return_exceptions=True)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert all(isinstance(o, LogWriteError) for o in outcomes)
        assert str(outcomes[0]).startswith(f"{db_path}: commit of 2 records failed: ")
        stats = log.stats
        assert (stats.failed_commits, stats.failed_records) == (3, 3 + 1 + 2)
        assert (log.pending_records, log.pending_bytes) == (0, 0)


async def test_a_commit_takes_no_longer_than_the_append_that_waited_for_it(
    db_path: Path,
) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.ALWAYS) as log:
        started = time.perf_counter()
        await log.append("e", 1, 0, 1, PAYLOAD)
        waited = time.perf_counter() - started
        assert 0 < log.stats.last_commit_latency_s <= waited


async def test_the_checkpointer_is_woken_every_checkpoint_commits(db_path: Path) -> None:
    with ObservationLog(
        db_path, fsync=FsyncPolicy.OFF, checkpoint_commits=4, wal_limit_bytes=1 << 30
    ) as log:
        for seq in range(1, 13):
            await log.append("e", seq, 0, 1, b"p")  # one group each
            if seq % 4 == 0:
                await asyncio.to_thread(
                    _wait_for, functools.partial(_checkpoints_are, log, seq // 4)
                )
    stats = log.stats  # closed: the checkpointer has stopped
    assert (stats.checkpoints, stats.wal_restarts) == (3, 0)


def _checkpoints_are(log: ObservationLog, n: int) -> bool:
    return log.stats.checkpoints == n


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_the_checkpointer_runs_at_nice_19(db_path: Path) -> None:
    if sys.platform != "linux":
        pytest.skip("per-thread nice values are a Linux feature")
    with ObservationLog(db_path):
        [thread] = [t for t in threading.enumerate() if t.name.startswith("observation-log-ckpt")]
        native_id = thread.native_id
        assert native_id is not None
        _wait_for(lambda: os.getpriority(os.PRIO_PROCESS, native_id) == 19)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != 19


async def test_in_memory_dedup_state_follows_gaps_as_they_fill(db_path: Path) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        for seq in (1, 3, 5):
            await log.append("e", seq, 0, 1, b"p")
        assert log.high_water("e") == 1
        await log.append("e", 2, 0, 1, b"p")
        assert log.high_water("e") == 3
        assert not (await log.append("e", 5, 0, 1, b"p")).applied  # a resend: the same bytes
        await log.append("e", 4, 0, 1, b"p")
        assert log.high_water("e") == 5
        assert log.edges()["e"] == EdgeAggregate("e", 5, 5, 5, 5, 5)


async def test_closed_and_full_logs_say_which_file(db_path: Path) -> None:
    log = ObservationLog(db_path, fsync=FsyncPolicy.OFF, max_pending_bytes=10)
    with WriterPlug(log):
        log.append("e", 1, 0, 1, b"x" * 8)
        with pytest.raises(LogOverloaded) as full:
            log.append("e", 2, 0, 1, b"y" * 3)
    assert str(full.value) == f"{db_path}: 8 bytes pending, limit 10"
    log.close()
    with pytest.raises(LogClosed) as closed:
        log.append("e", 3, 0, 1, b"z")
    assert str(closed.value) == f"{db_path}: log is closed"


def test_a_failed_upgrade_changes_nothing(db_path: Path) -> None:
    """A version-2 file that already has one of the new columns: the upgrade's ALTER
    fails, the transaction is rolled back and the file keeps its version."""
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE batches (edge_id TEXT NOT NULL, seq INTEGER NOT NULL, tick INTEGER NOT"
        " NULL, count INTEGER NOT NULL, payload BLOB NOT NULL, received_at REAL NOT NULL,"
        " offset INTEGER, PRIMARY KEY (edge_id, seq))"
    )
    db.execute("PRAGMA user_version=2")
    db.close()
    with pytest.raises(LogOpenError, match="duplicate column name: offset"):
        ObservationLog(db_path)
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = [r[1] for r in db.execute("PRAGMA table_info(batches)")]
        assert "segment" not in columns  # the ALTER before the failing one was undone
    finally:
        db.close()


def test_a_callback_of_submit_that_raises_is_logged_and_the_writer_goes_on(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    done = threading.Event()

    def bad(outcome: AppendResult | BaseException) -> None:
        raise RuntimeError("submitter bug")

    with (
        caplog.at_level(logging.ERROR, logger="edgeswarm.gateway"),
        ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log,
    ):
        log.submit(LogRecord("e", 1, 0, 1, b"p", 0.0), bad)
        log.submit(LogRecord("e", 2, 0, 1, b"p", 0.0), lambda outcome: done.set())
        assert done.wait(10)
    [record] = [r for r in caplog.records if r.exc_info]
    assert (record.name, record.getMessage()) == (
        "edgeswarm.gateway",
        "observation log callback failed",
    )
    assert str(record.exc_info[1]) == "submitter bug"  # type: ignore[index]


def test_records_whose_event_loop_has_closed_are_still_committed(db_path: Path) -> None:
    outcomes: list[AppendResult | BaseException] = []

    async def queue_and_leave(log: ObservationLog) -> None:
        log.append_then("e", 1, 0, 1, b"p", outcomes.append)

    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        with WriterPlug(log):
            asyncio.run(queue_and_leave(log))  # this loop is closed before the commit
        done = threading.Event()
        log.submit(LogRecord("e", 2, 0, 1, b"p", 0.0), lambda outcome: done.set())
        assert done.wait(10)  # the writer got past the closed loop
        assert log.high_water("e") == 2
    assert outcomes == []  # nobody was left to tell


def test_settings_are_checked_and_defaults_are_the_documented_ones(db_path: Path) -> None:
    with ObservationLog(db_path) as log:
        assert (log.max_group_records, log.max_group_bytes) == (1024, 16 << 20)
        assert (log.checkpoint_commits, log.wal_limit_bytes) == (512, 64 << 20)
        assert log.max_pending_bytes == 256 << 20
    ones: dict[str, Any] = {
        "max_group_records": 1, "max_group_bytes": 1, "segment_bytes": 1,
        "checkpoint_commits": 1, "wal_limit_bytes": 1,
    }  # fmt: skip
    ObservationLog(db_path, **ones).close()  # 1 is allowed everywhere
    for name in ones:
        with pytest.raises(ValueError, match=r"^group, segment, checkpoint and WAL limits must"):
            ObservationLog(db_path, **{**ones, name: 0})


async def test_a_group_fills_max_group_bytes_exactly(db_path: Path) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, max_group_bytes=3000) as log:
        with WriterPlug(log):
            futures = [log.append("e", s, 0, 1, PAYLOAD) for s in range(1, 10)]
        await asyncio.gather(*futures)
        stats = log.stats
    assert stats.max_group_records == 3  # 3 x 1000 bytes fit in 3000, a 4th does not
    assert stats.commits == 1 + 3  # the plug's group, then 3 groups of 3


async def test_recovery_reports_what_it_lost_and_dropped(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    payloads = [os.urandom(1) for _ in range(4)]
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, segment_bytes=1) as log:
        for seq, payload in enumerate(payloads, start=1):  # one 1-byte segment each
            await log.append("e", seq, seq, 1, payload)
    segments = db_path.with_name(db_path.name + "-segments")
    (segments / "000000000002.seg").unlink()
    (segments / "000000000003.seg").unlink()
    with (segments / "000000000004.seg").open("ab") as f:
        f.write(b"uncommitted")
    with caplog.at_level(logging.INFO, logger="edgeswarm.gateway"):
        log = ObservationLog(db_path, fsync=FsyncPolicy.OFF, segment_bytes=1)
    with log:
        assert log.stats.lost_on_open == 2  # both missing segments, counted together
        assert [r.seq for r in log.read("e")] == [1, 4]
    [lost] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (lost.name, lost.getMessage()) == (
        "edgeswarm.gateway",
        "observation log records lost: their segment bytes are missing",
    )
    assert (lost.lost, lost.segments, lost.path) == (2, [2, 3], str(db_path))  # type: ignore[attr-defined]
    [dropped] = [r for r in caplog.records if r.levelno == logging.INFO]
    assert dropped.getMessage() == "observation log dropped uncommitted segment bytes"
    assert (dropped.bytes, dropped.path) == (11, str(db_path))  # type: ignore[attr-defined]


def test_an_empty_log_drops_segment_bytes_no_row_points_at(db_path: Path) -> None:
    ObservationLog(db_path).close()
    segments = db_path.with_name(db_path.name + "-segments")
    (segments / "000000000001.seg").write_bytes(b"a crashed first group")
    with ObservationLog(db_path) as log:
        assert log.count() == 0
        assert list(segments.iterdir()) == []


async def test_a_clean_reopen_logs_no_warning(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, segment_bytes=1000) as log:
        await asyncio.gather(*(log.append("e", s, s, 1, PAYLOAD) for s in range(1, 6)))
    with caplog.at_level(logging.INFO, logger="edgeswarm.gateway"):
        ObservationLog(db_path, fsync=FsyncPolicy.OFF, segment_bytes=1000).close()
    assert [r.getMessage() for r in caplog.records] == []


def test_the_logs_threads_are_named_daemons(db_path: Path) -> None:
    """Daemons: a gateway that dies without close() still exits; named for operators."""
    with ObservationLog(db_path):
        threads = {t.name: t.daemon for t in threading.enumerate()}
        assert threads["observation-log:obs.sqlite"] is True
        assert threads["observation-log-ckpt:obs.sqlite"] is True


def test_open_refusals_name_the_file(db_path: Path) -> None:
    with ObservationLog(db_path), pytest.raises(LogOpenError) as busy:
        ObservationLog(db_path)
    assert str(busy.value) == f"{db_path}: in use by another ObservationLog"
    assert busy.value.path == db_path
    blocked = db_path.with_name("other.sqlite")
    blocked.with_name("other.sqlite-segments").write_text("a file, not a directory")
    with pytest.raises(LogOpenError) as segments:
        ObservationLog(blocked)
    assert segments.value.path == blocked
    assert str(segments.value).startswith(f"{blocked}: segment directory: ")


@pytest.mark.parametrize(
    ("statements", "problem"),
    [
        (["CREATE TABLE x (a)", "PRAGMA user_version=3"],
         "foreign schema (user_version=3, tables=['x'])"),
        # the current user_version: a version-3 file would first be upgraded (a column added)
        (["CREATE TABLE batches (edge_id, seq)", "PRAGMA user_version=4"],
         "foreign schema (batches['edge_id', 'seq'])"),
    ],
)  # fmt: skip
def test_a_foreign_schema_is_named(db_path: Path, statements: list[str], problem: str) -> None:
    db = sqlite3.connect(db_path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()
    with pytest.raises(LogCorruptError) as info:
        ObservationLog(db_path)
    assert info.value.path == db_path
    assert str(info.value) == f"{db_path}: {problem}"


async def test_a_failed_insert_rolls_back_and_the_next_group_commits(db_path: Path) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        await log.append("e", 1, 0, 1, b"a")
        db = sqlite3.connect(db_path)
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON batches WHEN NEW.seq = 3"
            " BEGIN SELECT RAISE(ABORT, 'disk trouble'); END"
        )
        db.commit()
        db.close()
        with WriterPlug(log) as plug:
            futures = [log.append("e", s, 0, 1, b"p") for s in (2, 3)]  # one group
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        # the group's transaction failed and rolled back; written again record by
        # record, only the one SQLite refuses fails (a bad record fails alone)
        assert outcomes[0] == AppendResult("e", 2, applied=True)
        assert isinstance(outcomes[1], LogRecordRejected)
        assert "disk trouble" in str(outcomes[1])
        assert log.stats.failed_commits == 1
        assert (await log.append("e", 4, 0, 1, b"p")).applied  # no transaction left open
        assert log.high_water("e") == 2
    assert _rows(db_path) == {("e", 1), ("e", 2), ("e", 4), (plug.edge_id, 1)}


async def test_a_failed_recovery_changes_nothing(db_path: Path) -> None:
    payloads = [os.urandom(100) for _ in range(3)]
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        await asyncio.gather(*(log.append("e", s, s, 1, p) for s, p in enumerate(payloads, 1)))
    segment = db_path.with_name(db_path.name + "-segments") / "000000000001.seg"
    with segment.open("r+b") as f:
        f.truncate(150)  # seq 2 cut, seq 3 gone: their rows must be dropped
    db = sqlite3.connect(db_path)
    db.execute(
        "CREATE TRIGGER refuse BEFORE DELETE ON batches BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    db.commit()
    db.close()
    with pytest.raises(LogOpenError, match=r"no$"):
        ObservationLog(db_path)
    assert _rows(db_path) == {("e", 1), ("e", 2), ("e", 3)}  # rolled back
    db = sqlite3.connect(db_path)
    db.execute("DROP TRIGGER refuse")
    db.commit()
    db.close()
    with ObservationLog(db_path) as log:
        assert log.stats.lost_on_open == 2
        assert [r.payload for r in log.read("e")] == payloads[:1]


def test_conflicts_compare_bytes_with_the_stored_batch_or_the_one_just_written(
    tmp_path: Path,
) -> None:
    """``index.conflicts``: a duplicate with the same bytes is a resend; with other bytes,
    stored earlier or written earlier in the same group, it is a LogSeqConflict naming
    the edge and the number; a number held nowhere is no conflict."""
    from edgeswarm.gateway.log.index import checksum, conflicts, index_row, insert_rows, open_index

    db = open_index(
        tmp_path / "index.db",
        fsync=FsyncPolicy("normal"),
        busy_timeout_s=1.0,
        wal_limit_bytes=1 << 20,
    )
    try:

        def rec(seq: int, payload: bytes) -> LogRecord:
            return LogRecord("e", seq, tick=seq, count=1, payload=payload, received_at=0.0)

        stored = [rec(1, b"one"), rec(2, b"two")]
        insert_rows(db, [index_row(r, (None, None, None, checksum(r.payload))) for r in stored])
        duplicates = [rec(1, b"one"), rec(9, b"nine"), rec(2, b"TWO"), rec(5, b"FIVE")]
        found = conflicts(db, duplicates, written=[rec(5, b"five")])
        assert sorted(found) == [("e", 2), ("e", 5)]
        for seq in (2, 5):
            conflict = found[("e", seq)]
            assert (conflict.edge_id, conflict.seq) == ("e", seq)
            assert str(conflict) == (
                f"'e' seq {seq}: another batch with other bytes is stored under this number"
            )
        assert conflicts(db, [], written=stored) == {}
    finally:
        db.close()
