"""What a user of the spool relies on, in-process: the limits at their boundaries, refusals
naming the file, the durability pragma per fsync policy, segments reclaimed once acked,
``mark_sent`` persisted, ``would_drop``, ``--spool-fsync always`` and ``on_durable``, a
full disk on flush (warned, retried later), a reader holding the WAL, a second ``close``.

Written for the survivors of a mutation run over ``edgeswarm/edge/spool.py``; full disks
and failures come from real SQLite triggers and real files, nothing of the spool is mocked.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from edgeswarm.edge.spool import (
    DISK_FULL_RETRY_S,
    SeqOutOfOrder,
    Spool,
    SpoolDiskFull,
    SpoolError,
    SpoolFull,
    SpoolInUse,
)
from edgeswarm.edge.spool_file import WAL_LIMIT_BYTES
from edgeswarm.edge.spool_records import QuarantineReason
from edgeswarm.storage import FsyncPolicy


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "spool.db"


def segment_dir(path: Path) -> Path:
    return path.with_name(path.name + "-segments")


def segment_files(path: Path) -> dict[str, int]:
    """Name -> size of the spool's segment files."""
    return {p.name: p.stat().st_size for p in sorted(segment_dir(path).glob("*.seg"))}


def rows(path: Path) -> list[int]:
    """The seqs the index holds, as another process reading it sees them."""
    db = sqlite3.connect(path)
    try:
        return [seq for (seq,) in db.execute("SELECT seq FROM spool ORDER BY seq")]
    finally:
        db.close()


def fill_the_disk_on(spool: Spool, event: str) -> None:
    """From now on ``event`` (``DELETE ON spool``, ...) needs pages the index may not grow
    by: SQLite fails it with ``SQLITE_FULL``, as on a full disk."""
    spool._db.execute("CREATE TABLE pad (x BLOB)")
    spool._db.execute(
        f"CREATE TRIGGER needs_room BEFORE {event} BEGIN"
        " INSERT INTO pad VALUES (zeroblob(100000)); END"
    )
    spool._db.execute("PRAGMA max_page_count = 1")  # clamped to the pages it has now


def make_room(spool: Spool) -> None:
    spool._db.execute("PRAGMA max_page_count = 1000000")


# ------------------------------------------------------------------------ opening


def test_one_byte_segments_are_allowed_and_each_is_deleted_once_acked(path: Path) -> None:
    with Spool(path, segment_bytes=1, ack_flush_every=1) as spool:
        for seq in range(1, 5):  # every group starts a segment of its own
            spool.append(seq, b"p" * 10)
        assert segment_files(path) == {f"{n:012d}.seg": 10 for n in range(1, 5)}
        assert spool.ack(2)
        assert sorted(segment_files(path)) == [f"{n:012d}.seg" for n in (1, 3, 4)]
        assert spool.ack_through(3) == 2
        assert sorted(segment_files(path)) == ["000000000004.seg"]  # being appended to
    with Spool(path) as spool:
        assert spool.pending() == [(4, b"p" * 10)]


def test_refusals_at_open_name_the_spool(path: Path) -> None:
    with Spool(path), pytest.raises(SpoolInUse) as in_use:
        Spool(path)
    assert str(in_use.value) == f"{path}: in use by another process"
    other = path.with_name("other.db")
    segment_dir(other).write_bytes(b"")  # where its segment directory should be
    with pytest.raises(SpoolError) as refused:
        Spool(other)
    assert str(refused.value) == (
        f"{other}: cannot open its segments ([Errno 20] Not a directory: '{segment_dir(other)}')"
    )


@pytest.mark.parametrize(
    ("fsync", "synchronous"),
    [
        (FsyncPolicy.ALWAYS, 1),  # NORMAL: the syncer thread syncs the WAL itself
        (FsyncPolicy.NORMAL, 1),
        (FsyncPolicy.OFF, 0),
    ],
)
def test_the_index_syncs_as_its_fsync_policy_says(
    path: Path, fsync: FsyncPolicy, synchronous: int
) -> None:
    with Spool(path, fsync=fsync) as spool:
        assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == synchronous


# ------------------------------------------------------------------------ appending


def test_append_counts_no_observations_unless_told(path: Path) -> None:
    with Spool(path) as spool:
        spool.append(1, b"p")
        spool.append(2, b"q", count=5)
        assert (spool.count(1), spool.count_through(2)) == (0, 5)
    with Spool(path) as spool:
        assert (spool.count(1), spool.count(2)) == (0, 5)


def test_seqs_must_rise_within_a_group_too(path: Path) -> None:
    with Spool(path) as spool:
        with pytest.raises(SeqOutOfOrder, match=r"^seq 5 < next_seq 6$"):
            spool.append_many([(5, b"a", 1), (5, b"b", 1)])
        with pytest.raises(SeqOutOfOrder, match=r"^seq 4 < next_seq 6$"):
            spool.append_many([(5, b"a", 1), (4, b"b", 1)])
        assert (len(spool), spool.next_seq()) == (0, 1)
        assert spool.append_many([(5, b"a", 1), (6, b"b", 1)]) == ()
    assert rows(path) == [5, 6]


def test_block_takes_an_append_that_exactly_fills_the_spool(path: Path) -> None:
    with Spool(path, max_bytes=100, overflow="block") as spool:
        spool.append(1, b"x" * 60)
        spool.append(2, b"y" * 40)
        assert spool.bytes == 100
        with pytest.raises(SpoolFull):
            spool.append(3, b"z")  # one byte over
        assert [seq for seq, _ in spool.pending()] == [1, 2]


def test_would_drop_lists_the_oldest_victims_with_their_counts(tmp_path: Path) -> None:
    batches = [(1, b"x" * 30, 3), (2, b"x" * 30, 5), (3, b"x" * 30, 7)]
    with Spool(tmp_path / "drop.db", max_bytes=100, overflow="drop_oldest") as spool:
        spool.append_many(batches)
        assert spool.would_drop(10) == []  # exactly fills it
        assert spool.would_drop(11) == [(1, 3)]
        assert spool.would_drop(45) == [(1, 3), (2, 5)]
        assert len(spool) == 3  # asking drops nothing
        assert spool.append(4, b"y" * 45) == (1, 2)
    with Spool(tmp_path / "block.db", max_bytes=100, overflow="block") as spool:
        spool.append_many(batches)
        assert spool.would_drop(45) == []  # block never drops


def test_an_append_the_disk_refuses_leaves_no_bytes_in_the_segment(path: Path) -> None:
    with Spool(path) as spool:
        spool.append(1, b"a" * 100)
        fill_the_disk_on(spool, "INSERT ON spool")
        with pytest.raises(SpoolDiskFull):
            spool.append(2, b"b" * 100)
        assert segment_files(path) == {"000000000001.seg": 100}
        make_room(spool)
        spool.append(2, b"c" * 100)
        assert segment_files(path) == {"000000000001.seg": 200}
    with Spool(path) as spool:
        assert spool.pending() == [(1, b"a" * 100), (2, b"c" * 100)]


def test_a_failed_segment_write_names_the_segment_directory(path: Path) -> None:
    with Spool(path, segment_bytes=1) as spool:
        spool.append(1, b"a")
        shutil.rmtree(segment_dir(path))  # the next group needs a new segment file in it
        with pytest.raises(SpoolError) as failed:
            spool.append(2, b"b")
        new = segment_dir(path) / "000000000002.seg"
        assert str(failed.value) == (
            f"{segment_dir(path)}: [Errno 2] No such file or directory: '{new}'"
        )
        assert (len(spool), spool.next_seq()) == (1, 2)


# ------------------------------------------------------------------------ reading


def test_without_a_memory_cache_batches_are_read_back_and_checked(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Spool(path, cache_bytes=0) as spool:
        spool.append_many([(1, b"a" * 100, 3), (2, b"b" * 100, 4)])
        assert spool.pending() == [(1, b"a" * 100), (2, b"b" * 100)]
        with (segment_dir(path) / "000000000001.seg").open("r+b") as segment:
            segment.seek(150)  # in batch 2
            segment.write(b"X")
        with caplog.at_level(logging.WARNING, logger="edgeswarm.edge"):
            assert spool.pending() == [(1, b"a" * 100)]
        assert spool.quarantined_batches == 1
    [record] = [r for r in caplog.records if r.getMessage().startswith("spooled batch")]
    assert record.__dict__["spool"] == str(path)
    assert (record.__dict__["seq"], record.__dict__["reason"]) == (2, QuarantineReason.CHECKSUM)


def test_sent_through_only_rises_and_survives_a_reopen(path: Path) -> None:
    with Spool(path) as spool:
        assert spool.sent_through == 0
        spool.mark_sent(3)
        spool.mark_sent(2)
        assert spool.sent_through == 3
        fill_the_disk_on(spool, "UPDATE ON meta")
        spool.mark_sent(3)  # resending what was sent needs no room on the disk
        spool.mark_sent(1)
        with pytest.raises(SpoolDiskFull):
            spool.mark_sent(4)
        assert spool.sent_through == 3
    with Spool(path) as spool:
        assert spool.sent_through == 3
        spool.mark_sent(4)
    with Spool(path) as spool:
        assert spool.sent_through == 4


def test_fsync_always_offers_nothing_before_the_sync_and_tells_on_durable(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = threading.Event()
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:  # the disk answers when the test lets it
        assert synced.wait(10)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    told = threading.Event()
    with Spool(path, fsync="always") as spool:
        try:
            spool.on_durable(told.set)
            assert spool.durable_through == 0
            spool.append_many([(1, b"a", 1), (2, b"b", 1)])
            assert spool.pending() == []  # written, not on stable storage yet
            synced.set()
            assert told.wait(10)
            assert spool.durable_through == 2
            assert spool.pending() == [(1, b"a"), (2, b"b")]
        finally:
            synced.set()  # close waits for the syncer


# ------------------------------------------------------------------------ deleting


def test_a_flush_on_a_full_disk_warns_and_retries_after_the_pause(
    path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]  # the monotonic clock's zero is undefined (Linux: boot): it may read 0
    monkeypatch.setattr("edgeswarm.edge.spool.time.monotonic", lambda: now[0])
    with Spool(path, ack_flush_every=100) as spool:
        for seq in (1, 2, 3):
            spool.append(seq, b"p")
        spool.ack(1)
        spool.ack(2)
        fill_the_disk_on(spool, "DELETE ON spool")
        with caplog.at_level(logging.WARNING, logger="edgeswarm.edge"):
            spool.flush()  # not an error: the rows stay until a later flush
        [record] = [r for r in caplog.records if r.name == "edgeswarm.edge"]
        assert record.getMessage() == (
            "spool disk full; acknowledged batches are deleted at a later flush"
        )
        assert record.__dict__["spool"] == str(path)
        assert record.__dict__["acked"] == 2
        assert record.__dict__["error"] == f"{path}: database or disk is full"
        assert rows(path) == [1, 2, 3]
        make_room(spool)
        now[0] = DISK_FULL_RETRY_S - 0.1
        spool.flush()  # too soon after the full disk: not tried
        assert rows(path) == [1, 2, 3]
        now[0] = DISK_FULL_RETRY_S
        spool.flush()
        assert rows(path) == [3]
        now[0] = DISK_FULL_RETRY_S + 0.1  # the pause is over: the next flush runs at once
        spool.ack(3)
        spool.flush()
        assert rows(path) == []


def test_close_after_a_failed_close_does_nothing(path: Path) -> None:
    spool = Spool(path)
    spool.append(1, b"p")
    spool.ack(1)
    spool._db.execute(
        "CREATE TRIGGER refuse BEFORE DELETE ON spool BEGIN SELECT RAISE(ABORT, 'trouble'); END"
    )
    with pytest.raises(SpoolError, match="trouble"):
        spool.close()
    spool.close()
    with Spool(path) as again:  # the ACK was not deleted: the batch comes back, is resent
        assert again.pending() == [(1, b"p")]


def wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_appends_go_on_while_a_reader_holds_the_wal_which_shrinks_once_it_is_gone(
    path: Path,
) -> None:
    """A reader (an operator's sqlite3 shell, a backup) keeps every checkpoint from
    catching up: the WAL passes its bound, appends finish a checkpoint themselves and go
    on. Once the reader is gone the WAL is cut back to its bound."""
    deadline = time.monotonic() + 60
    with Spool(path) as spool:
        spool.append(1, b"p")
        reader = sqlite3.connect(path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM spool").fetchone()
            seq = 2
            while spool._checkpointer.counts()[1] == 0:  # an append restarted the WAL
                assert time.monotonic() < deadline
                spool.append(seq, b"p")
                seq += 1
            assert wal_bytes(path) > WAL_LIMIT_BYTES
        finally:
            reader.close()
        while wal_bytes(path) > WAL_LIMIT_BYTES:
            assert time.monotonic() < deadline
            spool.append(seq, b"p")
            seq += 1
        assert [s for s, _ in spool.pending()] == list(range(1, seq))


def test_an_append_never_waits_for_the_background_checkpoint_to_restart_the_wal(
    path: Path,
) -> None:
    """The edge appends on its event loop: with the WAL past its bound while the nice-19
    checkpoint thread holds a checkpoint (seconds under load), the append goes on at once
    and the WAL is restarted by the first append after that checkpoint ends."""
    with Spool(path) as spool:
        spool.append(1, b"p")
        checkpointer = spool._checkpointer
        holding, done = threading.Event(), threading.Event()

        def background_checkpoint() -> None:  # holds the checkpoint for up to 5 s
            with checkpointer._running:
                holding.set()
                done.wait(5)

        holder = threading.Thread(target=background_checkpoint)
        holder.start()
        assert holding.wait(5)
        checkpointer.wal_full = True
        started = time.monotonic()
        spool.append(2, b"p")
        waited = time.monotonic() - started
        done.set()
        holder.join(10)
        assert waited < 2, f"the append waited {waited:.1f} s for the background checkpoint"
        assert checkpointer.wal_full  # not restarted yet: the next append does it
        assert checkpointer.counts()[1] == 0
        spool.append(3, b"p")
        assert not checkpointer.wal_full
        assert checkpointer.counts()[1] == 1
        assert [seq for seq, _ in spool.pending()] == [1, 2, 3]


def test_a_new_sequence_epoch_is_kept_across_a_restart_with_the_batches_held(
    path: Path,
) -> None:
    """Another sender used this spool's numbers: the spool numbers from a new epoch, with
    nothing marked sent in it, and its batches go with it; all of it persisted."""
    with Spool(path) as spool:
        first = spool.seq_epoch
        spool.append(1, b"one", count=1)
        spool.append(2, b"two", count=2)
        spool.mark_sent(2)
        epoch = spool.start_new_epoch()
        assert epoch == spool.seq_epoch != first
        assert spool.sent_through == 0
        assert spool.next_seq() == 3
        assert [seq for seq, _ in spool.pending()] == [1, 2]
    with Spool(path) as spool:
        assert (spool.seq_epoch, spool.sent_through) == (epoch, 0)
        spool.mark_sent(1)
    with Spool(path) as spool:
        assert (spool.seq_epoch, spool.sent_through) == (epoch, 1)
        assert [(seq, bytes(p)) for seq, p in spool.pending()] == [(1, b"one"), (2, b"two")]
        assert spool.count_through(2) == 3
