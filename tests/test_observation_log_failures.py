"""How the observation log tells a failed commit, a refused record or a blocked write:
the error each waiter gets, the log line an operator reads, and what is kept."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeswarm.gateway.log import (
    FsyncPolicy,
    LogCorruptError,
    LogOpenError,
    LogRecordCorrupt,
    LogRecordRejected,
    LogWriteError,
    ObservationLog,
)

from .gateway_harness import WriterPlug


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "observations.db"


def refuse(db_path: Path, when: str) -> None:
    """A trigger that refuses (as a constraint: one record's fault) inserts ``when``."""
    db = sqlite3.connect(db_path)
    db.execute(
        f"CREATE TRIGGER refuse BEFORE INSERT ON batches WHEN {when}"
        " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    )
    db.commit()
    db.close()


class Locked:
    """Another connection holding the index's write lock."""

    def __init__(self, db_path: Path) -> None:
        self.db = sqlite3.connect(db_path, isolation_level=None)
        self.db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.db.execute("ROLLBACK")
        self.db.close()


@pytest.fixture
def failures(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.ERROR, logger="edgeswarm"):
        yield caplog


def commit_failures(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.getMessage() == "observation log commit failed"]


async def test_a_refused_record_is_rejected_naming_it_and_the_log_line_says_why(
    db_path: Path, failures: pytest.LogCaptureFixture
) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        await log.append("e", 1, 0, 1, b"a")
        refuse(db_path, "NEW.seq = 2")
        outcome = await asyncio.gather(log.append("e", 2, 0, 1, b"b"), return_exceptions=True)
        [rejected] = outcome
        assert type(rejected) is LogRecordRejected
        assert (rejected.edge_id, rejected.seq) == ("e", 2)
        assert str(rejected) == f"{db_path}: 'e' seq 2 cannot be stored: refused by the test"
        assert isinstance(rejected.__cause__, sqlite3.IntegrityError)
        [line] = commit_failures(failures.records)
        assert line.levelno == logging.ERROR
        assert line.path == str(db_path)  # type: ignore[attr-defined]
        assert line.records == 1  # type: ignore[attr-defined]
        assert line.error == "refused by the test"  # type: ignore[attr-defined]
        assert log.stats.failed_commits == 1


async def test_a_lone_record_that_meets_a_locked_index_is_a_write_error_not_its_fault(
    db_path: Path, failures: pytest.LogCaptureFixture
) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, busy_timeout_s=0.2) as log:
        await log.append("e", 1, 0, 1, b"a")
        locked = Locked(db_path)
        try:
            [outcome] = await asyncio.gather(log.append("e", 2, 0, 1, b"b"), return_exceptions=True)
        finally:
            locked.release()
        assert type(outcome) is LogWriteError  # the disk's or database's fault: resend it
        assert str(outcome) == f"{db_path}: commit of 1 records failed: database is locked"
        [line] = commit_failures(failures.records)
        assert (line.records, line.error) == (1, "database is locked")  # type: ignore[attr-defined]
        assert (await log.append("e", 2, 0, 1, b"b")).applied


async def test_a_refused_record_without_a_payload_fails_with_its_own_error(
    db_path: Path,
) -> None:
    """No payload, so no segment bytes to cut back: the record's error is what it gets."""
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        await log.append("e", 1, 0, 1, b"in a segment")  # a segment is open
        refuse(db_path, "NEW.seq = 2")
        [outcome] = await asyncio.gather(log.append("e", 2, 0, 0, b""), return_exceptions=True)
        assert type(outcome) is LogRecordRejected
        assert str(outcome).endswith("cannot be stored: refused by the test")
        assert (await log.append("e", 3, 0, 1, b"next")).applied
        assert [r.payload for r in log.read("e")] == [b"in a segment", b"next"]


async def test_a_record_refused_before_it_is_queued_names_its_edge_and_number(
    db_path: Path,
) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        with pytest.raises(LogRecordRejected) as raised:
            log.append("e", 7, 0, 1 << 63, b"p")
        assert (raised.value.edge_id, raised.value.seq) == ("e", 7)
        assert str(raised.value).startswith(f"{db_path}: ")


async def test_a_new_epoch_starts_above_what_the_edge_queued_but_not_yet_committed(
    db_path: Path,
) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        await log.append("e", 1, 0, 1, b"a")
        with WriterPlug(log):  # 9 is queued, not committed, when the epoch opens
            queued = log.append("e", 9, 0, 1, b"b")
            other = log.append("f", 20, 0, 1, b"c")
            assert log.open_epoch("e", 2) == 9
        assert (await queued).applied
        assert (await other).applied


async def test_an_epoch_that_cannot_be_registered_is_a_write_error_after_the_busy_timeout(
    db_path: Path,
) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF, busy_timeout_s=0.2) as log:
        await log.append("e", 1, 0, 1, b"a")
        locked = Locked(db_path)
        started = time.monotonic()
        try:
            with pytest.raises(LogWriteError) as raised:
                log.open_epoch("e", 2)
        finally:
            locked.release()
        assert time.monotonic() - started < 3.0  # its own busy timeout (0.2 s), not 5 s
        assert str(raised.value) == (
            f"{db_path}: cannot register a sequence epoch: database is locked"
        )
        assert log.open_epoch("e", 2) == 1  # registered once the lock is gone


async def test_a_recovery_that_fails_is_an_open_error_naming_the_file(db_path: Path) -> None:
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        await asyncio.gather(*(log.append("e", s, s, 1, b"x" * 100) for s in (1, 2)))
    segment = db_path.with_name(db_path.name + "-segments") / "000000000001.seg"
    with segment.open("r+b") as f:
        f.truncate(150)  # seq 2 cut: its row must be dropped, and the trigger refuses that
    db = sqlite3.connect(db_path)
    db.execute("CREATE TRIGGER keep BEFORE DELETE ON batches BEGIN SELECT RAISE(ABORT, 'no'); END")
    db.commit()
    db.close()
    with pytest.raises(LogOpenError) as raised:
        ObservationLog(db_path)
    assert type(raised.value) is LogOpenError  # not LogCorruptError: nothing is damaged
    assert not isinstance(raised.value, LogCorruptError)
    assert raised.value.path == db_path
    assert str(raised.value) == f"{db_path}: no"


async def test_the_wal_is_cut_back_to_its_limit_once_it_restarts(db_path: Path) -> None:
    limit = 256 << 10
    with ObservationLog(
        db_path,
        fsync=FsyncPolicy.OFF,
        wal_limit_bytes=limit,
        checkpoint_commits=1 << 20,
        max_group_records=1 << 20,
    ) as log:
        with WriterPlug(log):  # one large group: the WAL grows far past the limit
            big = [log.append("big", s, 0, 1, b"") for s in range(1, 20_001)]
        assert all(r.applied for r in await asyncio.gather(*big))
        wal = Path(f"{db_path}-wal")
        grown = wal.stat().st_size
        assert grown > 4 * limit
        deadline = time.monotonic() + 30
        seq = 0
        while wal.stat().st_size > limit:  # each commit checks the WAL; the next restarts it
            assert time.monotonic() < deadline, f"the WAL stayed at {wal.stat().st_size} bytes"
            seq += 1
            assert (await log.append("small", seq, 0, 1, b"")).applied
        assert log.stats.wal_restarts >= 1


@pytest.mark.parametrize("payload", [b"", b"bytes in a segment"])
async def test_a_row_changed_in_the_index_is_refused_at_read(db_path: Path, payload: bytes) -> None:
    """Every row carries its own checksum: a tick changed behind the log's back (a
    damaged page that still parses, a hand edit) is found when the row is read."""
    with ObservationLog(db_path, fsync=FsyncPolicy.OFF) as log:
        await asyncio.gather(*(log.append("e", s, 10 * s, 1, payload) for s in (1, 2)))
        db = sqlite3.connect(db_path)
        db.execute("UPDATE batches SET tick = 999 WHERE edge_id = 'e' AND seq = 2")
        db.commit()
        db.close()
        records = log.read("e")
        assert next(records).tick == 10
        with pytest.raises(LogRecordCorrupt) as raised:
            next(records)
        assert (raised.value.edge_id, raised.value.seq) == ("e", 2)
        assert "index row checksum mismatch" in str(raised.value)
