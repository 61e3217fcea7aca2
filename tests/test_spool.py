"""Spool: order, out-of-order acks, restart, overflow policies, corruption, a model test."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeswarm.edge.spool import (
    OverflowPolicy,
    PayloadTooLarge,
    SeqOutOfOrder,
    Spool,
    SpoolCorruptError,
    SpoolDiskFull,
    SpoolError,
    SpoolFull,
)
from edgeswarm.edge.spool_records import QuarantinedBatch, QuarantineReason


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "spool.sqlite"


def test_pending_in_seq_order_and_out_of_order_acks(path: Path) -> None:
    with Spool(path) as spool:
        assert spool.next_seq() == 1
        for seq in range(1, 6):
            assert spool.append(seq, f"p{seq}".encode()) == ()
        assert spool.next_seq() == 6
        assert len(spool) == 5
        assert spool.bytes == 10
        assert spool.ack(4)
        assert spool.ack(2)
        assert not spool.ack(2)  # already acked: idempotent
        assert not spool.ack(99)
        assert spool.pending() == [(1, b"p1"), (3, b"p3"), (5, b"p5")]
        assert spool.pending(after_seq=1, limit=1) == [(3, b"p3")]
        assert len(spool) == 3
        assert spool.bytes == 6
        assert spool.ack_through(3) == 2
        assert spool.pending() == [(5, b"p5")]


def test_restart_keeps_pending_and_next_seq(path: Path) -> None:
    with Spool(path) as spool:
        for seq in range(1, 4):
            spool.append(seq, b"abc")
        spool.ack(2)
    with Spool(path) as spool:
        assert spool.pending() == [(1, b"abc"), (3, b"abc")]
        assert spool.next_seq() == 4
        assert len(spool) == 2
        assert spool.bytes == 6
        spool.ack_through(10)
    with Spool(path) as spool:  # empty, yet seqs continue
        assert len(spool) == 0
        assert spool.next_seq() == 4
        spool.append(spool.next_seq(), b"d")
        assert spool.pending() == [(4, b"d")]


def test_seqs_may_skip_but_not_go_back(path: Path) -> None:
    with Spool(path) as spool:
        spool.append(5, b"a")
        assert spool.next_seq() == 6
        with pytest.raises(SeqOutOfOrder):
            spool.append(5, b"again")
        with pytest.raises(ValueError, match="next_seq"):
            spool.append(3, b"back")
        spool.append(10, b"b")
        assert spool.next_seq() == 11


def as_after_a_crash(path: Path) -> Path:
    """A copy of the open spool at ``path`` as a ``kill -9`` now would leave it (its index,
    WAL and segments as the page cache holds them), to open beside the running one."""
    copy = path.with_name(f"crashed-{os.urandom(4).hex()}-{path.name}")
    for suffix in ("", "-wal"):
        if path.with_name(path.name + suffix).exists():
            shutil.copyfile(path.with_name(path.name + suffix), copy.with_name(copy.name + suffix))
    shutil.copytree(
        path.with_name(path.name + "-segments"), copy.with_name(copy.name + "-segments")
    )
    return copy


def test_unflushed_acks_come_back_after_a_crash_flushed_ones_do_not(path: Path) -> None:
    spool = Spool(path, ack_flush_every=3)
    for seq in range(1, 6):
        spool.append(seq, b"p")
    spool.ack(1)
    spool.ack(2)
    assert len(spool) == 3  # forgotten at once in memory
    with Spool(as_after_a_crash(path)) as other:  # what a restart after a crash would see
        assert [s for s, _ in other.pending()] == [1, 2, 3, 4, 5]
    spool.ack(4)  # third ACK: rows deleted in one transaction
    with Spool(as_after_a_crash(path)) as other:
        assert [s for s, _ in other.pending()] == [3, 5]
    spool.ack(3)
    spool.close()  # close flushes
    with Spool(path) as other:
        assert other.pending() == [(5, b"p")]


def test_block_policy_raises_spool_full(path: Path) -> None:
    with Spool(path, max_bytes=100, overflow="block") as spool:
        spool.append(1, b"x" * 60)
        assert spool.would_overflow(41)
        assert not spool.would_overflow(40)
        with pytest.raises(SpoolFull) as info:
            spool.append(2, b"y" * 41)
        assert (info.value.needed, info.value.held, info.value.max_bytes) == (41, 60, 100)
        assert spool.next_seq() == 2  # nothing stored
        assert len(spool) == 1
        spool.ack(1)
        spool.append(2, b"y" * 41)
        assert spool.pending() == [(2, b"y" * 41)]


def test_a_full_disk_is_spool_disk_full_and_keeps_nothing_of_the_failed_write(path: Path) -> None:
    """SQLite's SQLITE_FULL (here from ``max_page_count``, as a full disk gives it): a
    typed error the edge waits on, not a SpoolError that stops it; the spool is as before
    the failed append, and takes the same batch once there is room."""
    with Spool(path) as spool:
        spool._db.execute("PRAGMA max_page_count = 1")  # no room to grow the index
        stored, failed, said = [], None, ""
        for seq in range(1, 5001):  # bounded: the index fills its pages long before
            try:
                spool.append(seq, b"p" * 200)
            except SpoolDiskFull as exc:
                failed, said = seq, str(exc)
                break
            stored.append(seq)
        assert failed is not None
        assert "full" in said
        assert spool.next_seq() == failed
        assert [seq for seq, _ in spool.pending()] == stored
        spool._db.execute("PRAGMA max_page_count = 1000000")
        spool.append(failed, b"q" * 200)
    with Spool(path) as again:
        assert [seq for seq, _ in again.pending()] == [*stored, failed]
        assert again.pending()[-1] == (failed, b"q" * 200)


def test_drop_oldest_counts_and_logs(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(path, max_bytes=100, overflow=OverflowPolicy.DROP_OLDEST) as spool:
        for seq in range(1, 6):
            spool.append(seq, b"x" * 20)
        assert spool.bytes == 100
        with caplog.at_level(logging.WARNING, logger="edgeswarm.edge"):
            dropped = spool.append(6, b"y" * 50)
        assert dropped == (1, 2, 3)
        assert spool.dropped_batches == 3
        assert spool.dropped_bytes == 60
        assert spool.bytes == 90
        assert [s for s, _ in spool.pending()] == [4, 5, 6]
        [record] = [r for r in caplog.records if r.name == "edgeswarm.edge"]
        assert record.levelno == logging.WARNING
        assert record.__dict__["event"] == "spool_drop"
        assert record.__dict__["dropped_batches"] == 3
        assert record.__dict__["dropped_bytes"] == 60
        assert record.__dict__["dropped_first_seq"] == 1
        assert record.__dict__["dropped_last_seq"] == 3
    with Spool(path, max_bytes=100, overflow="drop_oldest") as spool:  # counters persist
        assert (spool.dropped_batches, spool.dropped_bytes) == (3, 60)


def test_oversize_payload_is_a_clear_error(path: Path) -> None:
    for policy in OverflowPolicy:
        with Spool(path, max_bytes=10, overflow=policy) as spool:
            with pytest.raises(PayloadTooLarge, match="exceeds the spool bound of 10 bytes"):
                spool.append(spool.next_seq(), b"z" * 11)
            assert len(spool) == 0


def test_corrupt_file_raises_and_can_be_quarantined(path: Path) -> None:
    junk = os.urandom(8192)
    path.write_bytes(junk)
    with pytest.raises(SpoolCorruptError) as info:
        Spool(path)
    assert info.value.path == path
    moved = Spool.quarantine_file(path)
    assert moved.name.startswith("spool.sqlite.corrupt-")
    assert moved.read_bytes() == junk
    assert not path.exists()
    with Spool(path, min_next_seq=42) as spool:
        assert spool.next_seq() == 42
        assert len(spool) == 0


def test_foreign_database_is_corrupt(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()
    with pytest.raises(SpoolCorruptError, match="foreign schema"):
        Spool(path)


def test_uses_wal(path: Path) -> None:
    with Spool(path) as spool:
        spool.append(1, b"a")
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ------------------------------------------------- what the survivors of mutation asked for


def test_limits_hold_at_their_boundaries(path: Path) -> None:
    with Spool(path, max_bytes=100, overflow="drop_oldest") as spool:
        assert spool.append(1, b"x" * 100) == ()  # exactly max_bytes: fits, alone
        assert spool.append(2, b"y" * 40) == (1,)
        assert spool.append(3, b"z" * 60) == ()  # exactly fills it: nothing dropped
        assert spool.bytes == 100
        assert spool.append(4, b"w" * 40) == (2,)  # 40 over: dropping exactly 40 is enough
        assert [s for s, _ in spool.pending()] == [3, 4]
    assert Spool(path.with_name("one.sqlite"), max_bytes=1).max_bytes == 1
    for bad in ({"max_bytes": 0}, {"ack_flush_every": 0}, {"segment_bytes": 0}):
        with pytest.raises(
            ValueError, match=r"^max_bytes, ack_flush_every and segment_bytes must be >= 1$"
        ):
            Spool(path, **bad)  # type: ignore[arg-type]


def test_acks_are_deleted_every_64_by_default(path: Path) -> None:
    with Spool(path) as spool:
        assert spool.ack_flush_every == 64
        for seq in range(1, 70):
            spool.append(seq, b"p")
        assert spool.ack_through(63) == 63
        with Spool(as_after_a_crash(path)) as other:
            assert len(other) == 69  # 63 ACKs kept in memory only
        assert spool.ack(64)  # the 64th: all 64 rows go in one transaction
        with Spool(as_after_a_crash(path)) as other:
            assert [s for s, _ in other.pending()] == [65, 66, 67, 68, 69]


def test_one_byte_over_drops_and_one_drop_forgets_the_acks_below_it(path: Path) -> None:
    with Spool(path, max_bytes=100, overflow="drop_oldest", ack_flush_every=100) as spool:
        spool.append(1, b"x" * 60)
        spool.append(2, b"x" * 40)
        assert spool.ack(2)  # unflushed: its row is still there
        spool.append(3, b"y" * 40)
        assert spool.append(4, b"z" * 1) == (1,)  # 1 byte over the bound: the oldest goes
        assert spool.bytes == 41
        spool.flush()
    with Spool(path) as spool:
        assert [s for s, _ in spool.pending()] == [3, 4]


def test_ack_through_deletes_at_exactly_ack_flush_every(path: Path) -> None:
    with Spool(path, ack_flush_every=4) as spool:
        for seq in range(1, 7):
            spool.append(seq, b"p")
        assert spool.ack_through(4) == 4  # the 4th ACK: the rows go now
        with Spool(as_after_a_crash(path)) as other:
            assert [s for s, _ in other.pending()] == [5, 6]


def test_drops_add_up_and_unflushed_acks_below_a_drop_are_forgotten(path: Path) -> None:
    with Spool(path, max_bytes=50, overflow="drop_oldest", ack_flush_every=100) as spool:
        for seq in range(1, 6):
            spool.append(seq, b"x" * 10)
        assert spool.ack(2)  # kept in memory, its row still there
        assert spool.ack(5)
        assert spool.append(6, b"y" * 40) == (1, 3)  # 2 is acked already: not counted
        assert spool.append(7, b"y" * 30) == (4, 6)  # the ACK of 5 lies below: forgotten
        assert (spool.dropped_batches, spool.dropped_bytes) == (4, 70)
        assert spool.ack(7)
        spool.flush()
        db = sqlite3.connect(path)
        try:
            assert [r[0] for r in db.execute("SELECT seq FROM spool")] == []
        finally:
            db.close()
        assert len(spool) == 0
    with Spool(path) as spool:
        assert (spool.dropped_batches, spool.dropped_bytes) == (4, 70)


def test_drop_warnings_are_one_per_second_with_the_counts_since_the_last(
    path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr("edgeswarm.edge.spool.time.monotonic", lambda: now[0])
    with (
        Spool(path, max_bytes=30, overflow="drop_oldest") as spool,
        caplog.at_level(logging.WARNING, logger="edgeswarm.edge"),
    ):
        for seq in range(1, 4):
            spool.append(seq, b"x" * 10)
        spool.append(4, b"x" * 10)  # drops 1: the first drop is logged at once
        now[0] += 0.5
        spool.append(5, b"x" * 10)  # drops 2: within the second, counted, not logged
        now[0] += 0.5
        spool.append(6, b"x" * 10)  # drops 3: a second after the last line: logged
        now[0] += 0.2
        spool.append(7, b"x" * 10)  # drops 4: not logged
    lines = [r.__dict__ for r in caplog.records if r.getMessage().startswith("spool full")]
    assert [(r["seq"], r["dropped_batches"], r["dropped_bytes"]) for r in lines] == [
        (4, 1, 10),
        (6, 2, 20),  # the drops since the last line: seq 2 and seq 3
    ]
    last = lines[-1]
    assert (last["dropped_first_seq"], last["dropped_last_seq"]) == (3, 3)
    assert (last["spool_bytes"], last["max_bytes"], last["dropped_batches_total"]) == (30, 30, 3)
    assert last["spool"] == str(path)
    assert lines[0]["event"] == "spool_drop"


def test_a_failed_append_leaves_the_spool_as_it_was(path: Path) -> None:
    with Spool(path, max_bytes=30, overflow="drop_oldest") as spool:
        for seq in range(1, 4):
            spool.append(seq, b"x" * 10)
        db = sqlite3.connect(path)
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON spool WHEN NEW.seq = 4"
            " BEGIN SELECT RAISE(ABORT, 'disk trouble'); END"
        )
        db.commit()
        db.close()
        with pytest.raises(SpoolError) as info:  # the SQLite error, naming the spool
            spool.append(4, b"y" * 10)  # would have dropped seq 1 first
        assert str(info.value) == f"{path}: disk trouble"
        assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
        assert (len(spool), spool.bytes, spool.next_seq(), spool.dropped_batches) == (3, 30, 4, 0)
        assert [s for s, _ in spool.pending()] == [1, 2, 3]
        assert spool.append(5, b"z" * 10) == (1,)  # the spool goes on
    with Spool(path) as spool:
        assert [s for s, _ in spool.pending()] == [2, 3, 5]
        assert (spool.next_seq(), spool.dropped_batches) == (6, 1)


def test_a_failed_flush_keeps_the_acks_for_the_next_one(path: Path) -> None:
    with Spool(path, ack_flush_every=100) as spool:
        for seq in range(1, 4):
            spool.append(seq, b"p")
        spool.ack(1)
        spool.ack(2)
        db = sqlite3.connect(path)
        db.execute(
            "CREATE TRIGGER refuse BEFORE DELETE ON spool WHEN OLD.seq = 2"
            " BEGIN SELECT RAISE(ABORT, 'disk trouble'); END"
        )
        db.commit()
        with pytest.raises(SpoolError) as info:
            spool.flush()
        assert str(info.value) == f"{path}: disk trouble"
        assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
        assert [r[0] for r in db.execute("SELECT seq FROM spool")] == [1, 2, 3]  # rolled back
        db.execute("DROP TRIGGER refuse")
        db.commit()
        spool.flush()  # the same ACKs, now deleted
        assert [r[0] for r in db.execute("SELECT seq FROM spool")] == [3]
        db.close()


def test_close_twice_is_harmless(path: Path) -> None:
    spool = Spool(path)
    spool.append(1, b"a")
    spool.ack(1)
    spool.close()
    spool.close()
    with Spool(path) as again:
        assert len(again) == 0


def test_refusals_name_the_spool_and_what_is_wrong(path: Path) -> None:
    full = SpoolFull(needed=5, held=90, max_bytes=94)
    assert str(full) == "spool full: 90 of 94 bytes held, 5 more needed"
    db = sqlite3.connect(path)  # the right tables, a version this code does not know
    db.execute("CREATE TABLE spool (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute("PRAGMA user_version=7")
    db.commit()
    db.close()
    with pytest.raises(SpoolCorruptError) as info:
        Spool(path)
    assert info.value.path == path
    assert str(info.value) == (f"{path}: foreign schema (user_version=7, tables=['meta', 'spool'])")
    path.unlink()
    path.write_bytes(os.urandom(8192))
    with pytest.raises(SpoolCorruptError) as info:
        Spool(path)
    assert info.value.path == path
    assert str(info.value) == f"{path}: not a usable database (file is not a database)"
    path.unlink()
    with Spool(path) as spool:
        spool.append(1, b"a")
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE key = 'next_seq'")
    db.commit()
    db.close()
    with pytest.raises(SpoolCorruptError) as info:
        Spool(path)
    assert info.value.path == path
    assert str(info.value) == f"{path}: unreadable spool (KeyError('next_seq'))"
    missing_dir = path.parent / "no" / "such" / "dir" / "spool.sqlite"
    with pytest.raises(SpoolError) as refused:
        Spool(missing_dir)
    assert type(refused.value) is SpoolError  # not "corrupt": the directory is merely missing
    assert str(refused.value) == (
        f"{missing_dir}: cannot open spool (cannot create {missing_dir}: No such file or directory)"
    )


def test_quarantine_moves_the_wal_files_too_and_never_overwrites(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("edgeswarm.edge.spool.time.time", lambda: 1_700_000_000.5)
    moved = []
    for n in range(3):  # three corrupt spools in the same second: three names
        path.write_bytes(b"junk %d" % n)
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).write_bytes(b"%s %d" % (suffix.encode(), n))
        moved.append(Spool.quarantine_file(path))
    assert [p.name for p in moved] == [
        "spool.sqlite.corrupt-1700000000",
        "spool.sqlite.corrupt-1700000000-1",
        "spool.sqlite.corrupt-1700000000-2",
    ]
    for n, dest in enumerate(moved):
        assert dest.read_bytes() == b"junk %d" % n
        assert dest.with_name(dest.name + "-wal").read_bytes() == b"-wal %d" % n
        assert dest.with_name(dest.name + "-shm").read_bytes() == b"-shm %d" % n
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        name + suffix for name in (p.name for p in moved) for suffix in ("", "-wal", "-shm")
    )


# --------------------------------------------------------------------------- model test

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 3), st.integers(0, 40)),
        st.tuples(st.just("ack"), st.integers(0, 30), st.just(0)),
        st.tuples(st.just("ack_through"), st.integers(0, 30), st.just(0)),
        st.tuples(st.just("reopen"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_ops, drop=st.booleans(), flush_every=st.integers(1, 4))
def test_spool_matches_dict_model(
    tmp_path: Path, ops: list[tuple[str, int, int]], drop: bool, flush_every: int
) -> None:
    path = tmp_path / f"model-{os.urandom(6).hex()}.sqlite"
    max_bytes = 100
    policy = OverflowPolicy.DROP_OLDEST if drop else OverflowPolicy.BLOCK
    model: dict[int, bytes] = {}
    next_seq = 1
    dropped_batches = 0
    spool = Spool(path, max_bytes=max_bytes, overflow=policy, ack_flush_every=flush_every)
    try:
        for op, a, b in ops:
            if op == "append":
                seq = next_seq + a  # sometimes skips seqs
                payload = bytes([seq % 256]) * b
                held = sum(map(len, model.values()))
                if held + b > max_bytes and not drop:
                    with pytest.raises(SpoolFull):
                        spool.append(seq, payload)
                    continue
                expected_drop: list[int] = []
                while held + b > max_bytes:
                    oldest = min(model)
                    held -= len(model.pop(oldest))
                    expected_drop.append(oldest)
                assert spool.append(seq, payload) == tuple(expected_drop)
                dropped_batches += len(expected_drop)
                model[seq] = payload
                next_seq = seq + 1
            elif op == "ack":
                assert spool.ack(a) == (a in model)
                model.pop(a, None)
            elif op == "ack_through":
                gone = [s for s in model if s <= a]
                assert spool.ack_through(a) == len(gone)
                for s in gone:
                    del model[s]
            else:
                spool.close()
                spool = Spool(
                    path, max_bytes=max_bytes, overflow=policy, ack_flush_every=flush_every
                )
            assert spool.pending() == sorted(model.items())
            assert len(spool) == len(model)
            assert spool.bytes == sum(map(len, model.values()))
            assert spool.next_seq() == next_seq
            assert spool.dropped_batches == dropped_batches
    finally:
        spool.close()


def segment_of(spool: Path) -> Path:
    """The one segment file of a small closed spool."""
    (segment,) = spool.with_name(spool.name + "-segments").glob("*.seg")
    return segment


def copy_spool(source: Path, dest: Path) -> Path:
    """Copy a closed spool (its index and its segments) to ``dest``."""
    shutil.copyfile(source, dest)
    shutil.copytree(
        source.with_name(source.name + "-segments"), dest.with_name(dest.name + "-segments")
    )
    return dest


def _flip_bit(path: Path, offset: int, bit: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ (1 << bit)]))


def test_every_flipped_bit_in_a_spooled_batch_is_caught_before_it_is_sent(
    tmp_path: Path,
) -> None:
    """A bit flipped in a spooled payload used to be sent, stored and acked. Now each
    row's checksum (seq, count, payload) is checked before it is returned: the row is
    quarantined, counted and reported, and the others are still sent."""
    payloads = {seq: os.urandom(3000) for seq in range(1, 13)}
    pristine = tmp_path / "pristine.db"
    with Spool(pristine) as spool:
        for seq, payload in payloads.items():
            spool.append(seq, payload, count=seq)
    data = segment_of(pristine).read_bytes()  # the payloads are in the segment file
    rng = __import__("random").Random(13)
    for trial in range(24):
        victim = rng.choice(list(payloads))
        start = data.index(payloads[victim])
        offset, bit = start + rng.randrange(len(payloads[victim])), rng.randrange(8)
        path = copy_spool(pristine, tmp_path / f"trial-{trial}.db")
        _flip_bit(segment_of(path), offset, bit)
        told: list[QuarantinedBatch] = []
        with Spool(path, on_quarantine=told.append) as spool:
            sent = dict(spool.pending())
            assert victim not in sent
            assert sent == {s: p for s, p in payloads.items() if s != victim}
            assert [b.seq for b in told] == [victim]
            assert told[0].reason is QuarantineReason.CHECKSUM
            assert spool.quarantined_batches == 1
            assert len(spool) == 11
        with Spool(path) as spool:  # the quarantine is kept
            assert spool.quarantined_batches == 1
            assert victim not in dict(spool.pending())
            rows = sqlite3.connect(path).execute("SELECT seq, reason FROM quarantine").fetchall()
            assert rows == [(victim, "checksum")]


def test_a_changed_seq_or_count_is_caught_too(path: Path) -> None:
    with Spool(path) as spool:
        for seq in (1, 2, 3):
            spool.append(seq, b"payload", count=10)
    db = sqlite3.connect(path)
    db.execute("UPDATE spool SET count = 11 WHERE seq = 1")
    db.execute("UPDATE spool SET seq = 7 WHERE seq = 2")
    db.commit()
    db.close()
    with Spool(path) as spool:
        assert spool.pending() == [(3, b"payload")]
        assert spool.quarantined_batches == 2


def test_a_batch_refused_by_the_gateway_is_quarantined(path: Path) -> None:
    told: list[QuarantinedBatch] = []
    with Spool(path, on_quarantine=told.append) as spool:
        for seq in (1, 2, 3):
            spool.append(seq, b"p", count=4)
        assert spool.quarantine(2, QuarantineReason.REJECTED, "MALFORMED_FRAME: bad")
        assert not spool.quarantine(2, QuarantineReason.REJECTED, "again")
        assert spool.pending() == [(1, b"p"), (3, b"p")]
        assert len(spool) == 2
        assert spool.count_through(3) == 8
    assert told == [QuarantinedBatch(2, 4, QuarantineReason.REJECTED, "MALFORMED_FRAME: bad")]


def test_a_new_spool_has_its_own_epoch_an_upgraded_one_epoch_0(tmp_path: Path) -> None:
    with Spool(tmp_path / "a.db") as a, Spool(tmp_path / "b.db") as b:
        assert 0 < a.seq_epoch < 2**63
        assert a.seq_epoch != b.seq_epoch
        epoch = a.seq_epoch
    with Spool(tmp_path / "a.db") as a:
        assert a.seq_epoch == epoch
    old = tmp_path / "v2.db"  # a version-2 file: counts, no checksums
    db = sqlite3.connect(old)
    db.executescript(
        "CREATE TABLE spool (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL,"
        " count INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
        "INSERT INTO meta VALUES ('next_seq', 3), ('dropped_batches', 0), ('dropped_bytes', 0);"
        "INSERT INTO spool VALUES (1, x'01', 5), (2, x'02', 5);"
        "PRAGMA user_version = 2;"
    )
    db.close()
    with Spool(old) as spool:
        assert spool.seq_epoch == 0  # it continues the sequence the gateway knows
        assert spool.pending() == [(1, b"\x01"), (2, b"\x02")]  # unchecked, not lost
        spool.append(3, b"\x03", count=1)
        assert spool.pending()[-1] == (3, b"\x03")


def test_a_bit_flipped_anywhere_in_the_files_never_sends_changed_bytes(tmp_path: Path) -> None:
    """Whatever bit of spool.db or of its segment flips: the spool refuses to open or to
    read (a typed SpoolError naming the file), or what it returns to send is exactly what
    was spooled (a damaged row is quarantined, not sent)."""
    payloads = {seq: os.urandom(2000) for seq in range(1, 13)}
    pristine = tmp_path / "pristine.db"
    with Spool(pristine) as spool:
        for seq, payload in payloads.items():
            spool.append(seq, payload, count=1)
    rng = __import__("random").Random(7)
    outcomes = {"refused": 0, "quarantined": 0, "unchanged": 0}
    for trial in range(60):
        path = copy_spool(pristine, tmp_path / f"t{trial}.db")
        victim = path if trial % 2 else segment_of(path)
        _flip_bit(victim, rng.randrange(victim.stat().st_size), rng.randrange(8))
        try:
            with Spool(path) as spool:
                sent = dict(spool.pending())
                quarantined = spool.quarantined_batches
        except SpoolError as exc:
            refusal = str(exc)
            outcomes["refused"] += 1
            assert str(path) in refusal
            continue
        assert all(payloads[seq] == payload for seq, payload in sent.items())
        assert len(sent) + quarantined == len(payloads)  # nothing vanished unnoticed
        outcomes["quarantined" if quarantined else "unchanged"] += 1
    assert outcomes["refused"] + outcomes["quarantined"] > 0


def test_a_batch_of_an_older_spool_is_checked_by_decoding_it(tmp_path: Path) -> None:
    """Rows spooled before checksums existed carry none: before, an undecodable one was
    sent again and again (the gateway cannot say which seq it refuses) while the edge
    kept spooling and logged nothing. Now it must decode as the OBS_BATCH of its seq
    and count, or it is quarantined."""
    from edgeswarm.edge.batch_groups import unverified_batch_problem
    from edgeswarm.wire import ObservationBatch, encode_payload

    def batch(seq: int, n: int) -> bytes:
        return encode_payload(
            ObservationBatch(
                seq,
                seq,
                np.arange(n, dtype=np.uint32),
                np.zeros((n, 2), np.float32),
                np.zeros(n, np.float32),
            )
        )

    old = tmp_path / "v2.db"
    db = sqlite3.connect(old)
    db.executescript(
        "CREATE TABLE spool (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL,"
        " count INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
        "INSERT INTO meta VALUES ('next_seq', 5), ('dropped_batches', 0), ('dropped_bytes', 0);"
        "PRAGMA user_version = 2;"
    )
    rows = [(1, batch(1, 3), 3), (2, b"\xc1garbage", 3), (3, batch(7, 3), 3), (4, batch(4, 3), 9)]
    db.executemany("INSERT INTO spool VALUES (?, ?, ?)", rows)
    db.commit()
    db.close()
    told: list[QuarantinedBatch] = []
    with Spool(old, on_quarantine=told.append, check_unverified=unverified_batch_problem) as spool:
        assert [seq for seq, _ in spool.pending()] == [1]
    assert [(b.seq, b.reason) for b in told] == [(s, QuarantineReason.CHECKSUM) for s in (2, 3, 4)]
