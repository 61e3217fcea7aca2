"""The spool's payload segments: group commits, a torn tail after a crash, whole segments
released, the previous version's file converted at open, bytes written per byte spooled,
``--spool-fsync always``."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from edgeswarm.edge.spool import Spool, SpoolInUse
from edgeswarm.edge.spool_records import QuarantinedBatch, QuarantineReason, batch_checksum
from edgeswarm.storage import FsyncPolicy


def segments(path: Path) -> dict[str, int]:
    """Name -> size of the spool's segment files."""
    directory = path.with_name(path.name + "-segments")
    return {p.name: p.stat().st_size for p in sorted(directory.glob("*.seg"))}


def group(first: int, n: int, size: int = 1000) -> list[tuple[int, bytes, int]]:
    return [(seq, os.urandom(size), seq % 7 + 1) for seq in range(first, first + n)]


def test_a_group_is_one_segment_write_and_one_row_per_batch(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    batches = group(1, 10)
    with Spool(path) as spool:
        assert spool.append_many(batches) == ()
        assert spool.next_seq() == 11
        assert spool.pending() == [(seq, payload) for seq, payload, _ in batches]
    # the bytes are in the segment, back to back; the index holds where they are
    assert segments(path) == {"000000000001.seg": 10 * 1000}
    db = sqlite3.connect(path)
    rows = db.execute("SELECT seq, length(payload), segment, offset, length FROM spool").fetchall()
    assert rows == [(seq, 0, 1, (seq - 1) * 1000, 1000) for seq in range(1, 11)]
    assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    with Spool(path) as spool:  # read back from disk, each checked
        assert spool.pending() == [(seq, payload) for seq, payload, _ in batches]
        assert [spool.count(seq) for seq in range(1, 11)] == [c for _, _, c in batches]


def test_a_segment_torn_at_the_end_by_a_crash_is_cut_back_at_open(tmp_path: Path) -> None:
    """A crash between a group's writev and its COMMIT leaves bytes no row references at
    the end of the newest segment: at open they are cut off, the committed batches are
    all there, and the next group is written where the last committed one ended."""
    path = tmp_path / "spool.db"
    first = group(1, 5)
    with Spool(path) as spool:
        spool.append_many(first)
    (name, committed) = next(iter(segments(path).items()))
    with (path.with_name(path.name + "-segments") / name).open("ab") as torn:
        torn.write(os.urandom(2500))  # half of a group, never committed
    told: list[QuarantinedBatch] = []
    with Spool(path, on_quarantine=told.append) as spool:
        assert segments(path)[name] == committed
        assert spool.pending() == [(seq, payload) for seq, payload, _ in first]
        assert spool.next_seq() == 6
        second = group(6, 3)
        spool.append_many(second)
    assert told == []
    assert segments(path)[name] == committed + 3000
    with Spool(path) as spool:
        assert spool.pending() == [(seq, p) for seq, p, _ in first + second]


def test_a_segment_newer_than_every_commit_is_removed_at_open(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        spool.append_many(group(1, 2))
    stray = path.with_name(path.name + "-segments") / "000000000002.seg"
    stray.write_bytes(os.urandom(100))  # a group that started a new segment, then a crash
    with Spool(path) as spool:
        assert not stray.exists()
        assert [seq for seq, _ in spool.pending()] == [1, 2]


def test_rows_whose_bytes_are_gone_are_quarantined_as_missing(tmp_path: Path) -> None:
    """After an OS crash under fsync normal a row can survive its bytes: it is moved to the
    quarantine (reason ``missing``), counted and told, and the others are still sent."""
    path = tmp_path / "spool.db"
    batches = group(1, 4)
    with Spool(path) as spool:
        spool.append_many(batches)
    segment = path.with_name(path.name + "-segments") / "000000000001.seg"
    os.truncate(segment, 2500)  # batches 3 and 4 lost their bytes
    told: list[QuarantinedBatch] = []
    with Spool(path) as spool:
        spool.on_quarantine = told.append  # set after open: told of those found at open
        assert spool.pending() == [(seq, p) for seq, p, _ in batches[:2]]
        assert spool.quarantined_batches == 2
    assert [(b.seq, b.reason) for b in told] == [(3, QuarantineReason.MISSING), (4, "missing")]
    with Spool(path) as spool:  # and the segment is cut to what the rows still reference
        assert [seq for seq, _ in spool.pending()] == [1, 2]
        assert segments(path)["000000000001.seg"] == 2000


def test_acknowledged_segments_are_deleted_whole(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool(path, segment_bytes=4000, ack_flush_every=1) as spool:
        for first in range(1, 25, 4):  # six groups of 4 x 1000 bytes: one segment each
            spool.append_many(group(first, 4))
        assert len(segments(path)) == 6
        spool.ack_through(10)  # segments 1 and 2 hold only acknowledged batches now
        assert sorted(segments(path)) == [f"{n:012d}.seg" for n in range(3, 7)]
        for seq in (11, 12):  # out of order: segment 3 (9..12) is all acknowledged now
            spool.ack(seq)
        assert "000000000003.seg" not in segments(path)
        spool.ack_through(24)
        assert list(segments(path)) == ["000000000006.seg"]  # the one appended to stays
        spool.append_many(group(25, 4))  # a new segment; the old one goes
        spool.ack_through(28)
        assert list(segments(path)) == ["000000000007.seg"]
    with Spool(path) as spool:
        assert len(spool) == 0
        assert spool.next_seq() == 29


def test_drop_oldest_releases_their_segments(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool(path, segment_bytes=2000, max_bytes=6000, overflow="drop_oldest") as spool:
        for first in range(1, 13, 2):
            spool.append_many(group(first, 2))
        assert spool.dropped_batches == 6
        assert [seq for seq, _ in spool.pending()] == list(range(7, 13))
        assert len(segments(path)) == 3


def previous_version_spool(path: Path, batches: list[tuple[int, bytes, int]]) -> None:
    """A spool file as the previous version (file version 3) left it: payloads inline."""
    db = sqlite3.connect(path)
    db.executescript(
        "PRAGMA page_size = 16384; PRAGMA journal_mode = WAL;"
        "CREATE TABLE spool (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL,"
        " count INTEGER NOT NULL DEFAULT 0, checksum INTEGER);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE quarantine (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL,"
        " count INTEGER NOT NULL, checksum INTEGER, reason TEXT NOT NULL, detail TEXT NOT NULL,"
        " at REAL NOT NULL);"
        "INSERT INTO meta VALUES ('dropped_batches', 0), ('dropped_bytes', 0),"
        " ('quarantined_batches', 0), ('seq_epoch', 77), ('sent_through', 2);"
        "PRAGMA user_version = 3;"
    )
    db.execute("INSERT INTO meta VALUES ('next_seq', ?)", (batches[-1][0] + 1,))
    db.executemany(
        "INSERT INTO spool VALUES (?, ?, ?, ?)",
        [(s, p, c, batch_checksum(s, c, p)) for s, p, c in batches],
    )
    db.commit()
    db.close()


def test_the_previous_versions_spool_is_converted_at_open_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """A spool.db of the previous version (payloads inline in SQLite) is upgraded in place:
    its batches are sent from their rows, checked, in order before the new ones, its
    epoch and numbering go on; new batches go to segments; acked, all are gone."""
    path = tmp_path / "spool.db"
    old = group(1, 4)
    previous_version_spool(path, old)
    with Spool(path) as spool:
        assert spool.seq_epoch == 77
        assert spool.sent_through == 2
        assert spool.next_seq() == 5
        assert len(spool) == 4
        assert spool.bytes == 4000
        assert spool.count_through(4) == sum(c for _, _, c in old)
        new = group(5, 3)
        spool.append_many(new)
        assert spool.pending() == [(s, p) for s, p, _ in old + new]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 4
    with Spool(path) as spool:  # after a restart, still all of them, old ones first
        assert spool.pending() == [(s, p) for s, p, _ in old + new]
        spool.ack_through(7)
    with Spool(path) as spool:
        assert len(spool) == 0
    assert sqlite3.connect(path).execute("SELECT count(*) FROM spool").fetchone()[0] == 0


def test_a_damaged_inline_batch_of_the_previous_version_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    old = group(1, 3)
    previous_version_spool(path, old)
    db = sqlite3.connect(path)
    payload = old[1][1]  # random bytes: flip the first, which b"x" may already be (1 in 256)
    db.execute(
        "UPDATE spool SET payload = ? WHERE seq = 2", (bytes([payload[0] ^ 0xFF]) + payload[1:],)
    )
    db.commit()
    db.close()
    with Spool(path) as spool:
        assert [seq for seq, _ in spool.pending()] == [1, 3]
        assert spool.quarantined_batches == 1


def _write_bytes() -> int:
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("write_bytes:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/<pid>/io")
def test_disk_writes_stay_under_one_and_a_half_times_the_payload(tmp_path: Path) -> None:
    """Before: every payload went to the WAL and again into the database file at each
    checkpoint, and pages around it with it (4.7-5x the payload bytes, measured with
    ``/proc/<pid>/io``). Now a payload is written once, beside a few index pages."""
    path = tmp_path / "spool.db"
    batch = 82_000  # a batch of 2048 observations
    payload = 0
    with Spool(path) as spool:
        spool.append_many(group(1, 1, 10))  # the file's creation is not what we measure
        before = _write_bytes()
        seq = 2
        for _ in range(40):  # ticks: a group of 12 batches each, acked two ticks later
            spool.append_many(group(seq, 12, batch))
            seq += 12
            spool.ack_through(seq - 25)
            payload += 12 * batch
        spool.flush()
        written = _write_bytes() - before
    assert written <= 1.5 * payload, written / payload


def test_a_spool_open_in_another_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool(path), pytest.raises(SpoolInUse, match="in use"):
        Spool(path)


def test_fsync_always_sends_a_batch_only_once_it_is_synced(tmp_path: Path) -> None:
    """``always``: a thread of its own syncs the segments and the WAL after each group
    (never the tick thread); ``pending`` offers only batches on stable storage."""
    path = tmp_path / "spool.db"
    synced = threading.Event()
    real_fdatasync = os.fdatasync
    calls: list[str] = []

    def fdatasync(fd: int) -> None:
        calls.append(threading.current_thread().name)
        real_fdatasync(fd)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fdatasync", fdatasync)
        with Spool(path, fsync=FsyncPolicy.ALWAYS) as spool:
            spool.on_durable(synced.set)
            assert spool.durable_through == 0
            spool.append_many(group(1, 3))
            assert synced.wait(10)
            while spool.durable_through != 3:  # the syncer moved it before telling us
                synced.clear()
                assert synced.wait(10)
            assert [seq for seq, _ in spool.pending()] == [1, 2, 3]
    assert calls
    assert "spool-sync" in set(calls)
    assert threading.current_thread().name not in set(calls)
    with Spool(path, fsync=FsyncPolicy.NORMAL) as spool:
        assert spool.durable_through is None  # nothing waits under normal
        assert [seq for seq, _ in spool.pending()] == [1, 2, 3]
