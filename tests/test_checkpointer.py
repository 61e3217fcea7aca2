"""The checkpointer thread of a WAL-mode index, driven directly against a real SQLite file."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeswarm.storage import Schema, open_database
from edgeswarm.storage.checkpoint import CHECKPOINT_NICE, Checkpointer

PAGE = 4096
SCHEMA = Schema(
    version=1, create=("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)",), tables=frozenset({"t"})
)


class StoreError(Exception):
    pass


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = open_database(
        tmp_path / "index.db",
        SCHEMA,
        page_size=PAGE,
        synchronous="NORMAL",
        pragmas=("PRAGMA wal_autocheckpoint=0",),
        corrupt=StoreError,
        failed=StoreError,
    )
    yield db
    db.close()


def checkpointer(path: Path, *, wal_limit_bytes: int = 1 << 20) -> Checkpointer:
    return Checkpointer(
        path,
        synchronous="NORMAL",
        busy_timeout_s=1.0,
        wal_limit_bytes=wal_limit_bytes,
        page_size=PAGE,
        thread_name="test-checkpoint",
    )


def write(db: sqlite3.Connection, rows: int, start: int = 0) -> None:
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO t VALUES (?, ?)", ((start + i, os.urandom(PAGE)) for i in range(rows))
    )
    db.execute("COMMIT")


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def wal_frames(path: Path) -> int:
    """Frames in the WAL, read without copying any (a reader's view of the -wal header)."""
    return (Path(f"{path}-wal").stat().st_size - 32) // (PAGE + 24)


def test_a_request_runs_a_checkpoint_on_a_named_low_priority_thread(
    writer: sqlite3.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "index.db"
    write(writer, 20)
    before = path.stat().st_size
    cp = checkpointer(path)
    cp.start()
    [thread] = [t for t in threading.enumerate() if t.name == "test-checkpoint:index.db"]
    assert thread.daemon
    cp.request()
    wait_until(lambda: cp.counts() == (1, 0, 0))
    assert path.stat().st_size >= before + 20 * PAGE  # the pages are in the main file now
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    assert int(stat.rsplit(")", 1)[1].split()[16]) == CHECKPOINT_NICE  # field 19: nice
    cp.stop()
    assert not thread.is_alive()
    assert cp.counts() == (1, 0, 0)


def test_stop_closes_the_checkpointers_connection(
    writer: sqlite3.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "index.db"

    def fds() -> int:
        return sum(
            1
            for fd in Path("/proc/self/fd").iterdir()
            if os.path.realpath(fd).startswith(str(path))
        )

    alone = fds()
    assert alone > 0
    cp = checkpointer(path)
    cp.start()
    cp.request()
    wait_until(lambda: cp.counts()[0] == 1)
    assert fds() > alone
    cp.stop()
    writer.close()  # SQLite holds a closed connection's descriptors while another holds locks
    assert fds() == 0


@pytest.mark.parametrize(("extra", "full"), [(0, True), (1, False)])
def test_the_thread_marks_the_wal_full_when_its_frames_reach_the_limit(
    writer: sqlite3.Connection, tmp_path: Path, extra: int, full: bool
) -> None:
    path = tmp_path / "index.db"
    write(writer, 10)
    frames = wal_frames(path)
    cp = checkpointer(path, wal_limit_bytes=frames * PAGE + extra)
    cp.start()
    cp.request()
    wait_until(lambda: cp.counts()[0] == 1)
    cp.stop()
    assert cp.wal_full is full


def test_committed_marks_the_wal_full_only_past_the_limit_in_bytes(
    writer: sqlite3.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "index.db"
    nothing = checkpointer(tmp_path / "other.db", wal_limit_bytes=1)
    nothing.committed()  # no -wal file: nothing to restart
    assert not nothing.wal_full
    cp = checkpointer(path, wal_limit_bytes=1)
    write(writer, 1)
    size = Path(f"{path}-wal").stat().st_size
    cp.wal_limit_bytes = size
    cp.committed()
    assert not cp.wal_full  # at the limit is not past it
    cp.wal_limit_bytes = size - 1
    cp.committed()
    assert cp.wal_full
    cp.wal_limit_bytes = size + 1
    cp.committed()
    assert cp.wal_full  # stays until the writer restarts the WAL


def test_the_writer_restarts_the_wal_and_the_next_commit_writes_from_its_start(
    writer: sqlite3.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "index.db"
    writer.execute(f"PRAGMA journal_size_limit={4 * PAGE}")
    write(writer, 50)
    cp = checkpointer(path, wal_limit_bytes=4 * PAGE)
    cp.committed()
    assert cp.wal_full
    cp.restart_wal(writer)
    assert not cp.wal_full
    assert cp.counts() == (1, 1, 0)
    write(writer, 1, start=1000)  # restarts the WAL from its beginning, truncated to the limit
    assert wal_frames(path) < 10
    assert [row[0] for row in writer.execute("SELECT count(*) FROM t")] == [51]


def test_a_failed_checkpoint_is_counted_logged_and_not_a_restart(
    writer: sqlite3.Connection, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "index.db"
    cp = checkpointer(path)
    cp.committed()
    closed = sqlite3.connect(path)
    closed.close()
    cp.wal_full = True
    with caplog.at_level(logging.WARNING, logger="edgeswarm.storage"):
        cp.restart_wal(closed)
    assert cp.counts() == (0, 0, 1)
    cp.restart_wal(closed)
    assert cp.counts() == (0, 0, 2)
    assert not cp.wal_full
    [record, _] = [r for r in caplog.records if r.getMessage() == "SQLite checkpoint failed"]
    assert record.levelno == logging.WARNING
    assert record.path == str(path)  # type: ignore[attr-defined]
    assert "closed database" in record.error  # type: ignore[attr-defined]


def test_a_request_while_the_wal_is_full_is_left_to_the_writer_and_the_thread_goes_on(
    writer: sqlite3.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "index.db"
    write(writer, 5)
    cp = checkpointer(path)
    cp.wal_full = True  # the writer restarts the WAL before its next group
    cp.start()
    cp.request()
    wait_until(lambda: not cp._wake.is_set())  # the thread took the request
    cp.restart_wal(writer)
    assert cp.counts() == (1, 1, 0)  # the writer's checkpoint only
    write(writer, 5, start=100)
    cp.request()  # the thread still serves requests
    wait_until(lambda: cp.counts() == (2, 1, 0))
    cp.stop()


def test_a_writer_that_cannot_wait_skips_the_restart_while_a_checkpoint_runs(
    writer: sqlite3.Connection, tmp_path: Path
) -> None:
    """The gateway's loop restarts ``checkpoints.db``'s WAL without waiting: while the
    background checkpoint runs it goes on, the WAL still marked full, and restarts later."""
    path = tmp_path / "index.db"
    write(writer, 50)
    cp = checkpointer(path, wal_limit_bytes=4 * PAGE)
    cp.committed()
    with cp._running:  # a background checkpoint in progress
        started = time.monotonic()
        assert cp.restart_wal(writer, wait=False) is False
        assert time.monotonic() - started < 0.5
    assert cp.wal_full
    assert cp.counts() == (0, 0, 0)
    assert cp.restart_wal(writer, wait=False) is True
    assert not cp.wal_full
    assert cp.counts() == (1, 1, 0)
