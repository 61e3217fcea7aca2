"""Agents' last checkpoints in ``checkpoints.db``: columnar blocks, newest row per agent."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from edgeswarm.gateway.agent_store import AgentStore, AgentStoreError
from edgeswarm.gateway.checkpoint_store import WAL_CHECKPOINT_COMMITS
from edgeswarm.gateway.placement_metrics import CheckpointFileCollector

from .test_storage import fds_on

AGENTS_AND_EDGES = (
    "CREATE TABLE agents (agent_id INTEGER PRIMARY KEY, policy TEXT NOT NULL,"
    " labels TEXT NOT NULL, pin TEXT, added_at REAL NOT NULL);"
    "CREATE TABLE edges (edge_id TEXT PRIMARY KEY, weight REAL NOT NULL,"
    " drained INTEGER NOT NULL, first_seen REAL NOT NULL, updated_at REAL NOT NULL);"
)
"""The tables of ``placement.db`` every version has had."""


def save(store: AgentStore, edge: str, ids: list[int], tick: int, value: float) -> int:
    n = len(ids)
    return store.checkpoints.save(
        edge,
        np.array(ids, dtype=np.uint32),
        np.full(n, tick, dtype=np.uint64),
        np.full((n, 2), value, dtype=np.float32),
    )


def blocks(path: Path) -> int:
    """Blocks in the checkpoint file beside ``path`` (a ``placement.db``)."""
    with sqlite3.connect(path.with_name("checkpoints.db")) as db:
        count = int(db.execute("SELECT COUNT(*) FROM checkpoint_blocks").fetchone()[0])
    db.close()
    return count


def test_the_newest_row_per_agent_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "placement.db"
    with AgentStore(path) as store:
        store.add_agents(0, 10, policy="boids")
        assert save(store, "a", [1, 2, 3], 5, 1.0) == 3
        assert save(store, "b", [2, 3], 7, 2.0) == 2
        assert save(store, "a", [3, 4], 6, 3.0) == 1  # 3's row is older than b's: ignored
    with AgentStore(path) as store:
        ticks, state, found = store.checkpoints.rows(np.arange(6, dtype=np.uint32), 3)
        assert ticks.tolist() == [0, 5, 7, 7, 6, 0]
        assert found.tolist() == [False, True, True, True, True, False]
        assert state[:, 0].tolist() == [0.0, 1.0, 2.0, 2.0, 3.0, 0.0]
        assert (state[:, 2] == 0).all()  # wider than stored: zero-padded
        shown = store.checkpoints.one(3)
        assert shown is not None
        assert (shown["edge_id"], shown["tick"]) == ("b", 7)
        assert store.checkpoints.one(9) is None
        assert [a for a, _ in store.checkpoints.between(2, 4)] == [2, 3, 4]


def test_blocks_nobody_needs_any_more_are_deleted(tmp_path: Path) -> None:
    path = tmp_path / "placement.db"
    with AgentStore(path) as store:
        store.add_agents(0, 100, policy="boids")
        for tick in range(1, 30):
            save(store, "a", list(range(100)), tick, float(tick))
        assert blocks(path) == 1  # each frame supersedes the one before
        save(store, "b", [5], 40, 9.0)
        assert blocks(path) == 2


def test_a_run_of_agents_with_rows_is_stored_like_any_other_frame(tmp_path: Path) -> None:
    """One edge's run of consecutive agents (the common frame) takes a faster path: it
    keeps the same rows and deletes the same blocks as the general one."""
    path = tmp_path / "placement.db"
    with AgentStore(path) as store:
        store.add_agents(0, 100, policy="boids")
        assert save(store, "a", list(range(100)), 5, 1.0) == 100
        assert save(store, "a", list(range(50)), 6, 2.0) == 50
        assert blocks(path) == 2  # the first block still holds 50..99
        assert save(store, "a", list(range(50, 100)), 6, 3.0) == 50
        assert blocks(path) == 2  # the first block held nobody's newest row: deleted
        assert save(store, "a", list(range(10, 21)), 3, 4.0) == 0  # older: nothing kept
        assert save(store, "b", [30], 9, 5.0) == 1
        assert save(store, "a", list(range(25, 36)), 7, 6.0) == 10  # 30's row is newer
        assert blocks(path) == 4  # 0..24 and 36..49 keep the second block alive
    with AgentStore(path) as store:
        ticks, state, found = store.checkpoints.rows(np.arange(100, dtype=np.uint32), 2)
    assert found.all()
    expected = [6] * 25 + [7] * 5 + [9] + [7] * 5 + [6] * 64
    assert ticks.tolist() == expected
    assert (
        state[:, 0].tolist() == [2.0] * 25 + [6.0] * 5 + [5.0] + [6.0] * 5 + [2.0] * 14 + [3.0] * 50
    )


def test_a_failed_write_stores_and_remembers_nothing(tmp_path: Path) -> None:
    path = tmp_path / "placement.db"
    with AgentStore(path) as store:
        store.add_agents(0, 10, policy="boids")
        save(store, "a", [1], 5, 1.0)
        blocker = sqlite3.connect(path.with_name("checkpoints.db"), timeout=0)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file
        try:
            store.checkpoints._db.execute("PRAGMA busy_timeout = 0")
            with pytest.raises(AgentStoreError):
                save(store, "a", [1, 2], 9, 2.0)
        finally:
            blocker.rollback()
            blocker.close()
        ticks, _, found = store.checkpoints.rows(np.array([1, 2], dtype=np.uint32), 2)
        assert ticks.tolist() == [5, 0]
        assert found.tolist() == [True, False]


def test_a_placement_db_of_version_1_is_upgraded(tmp_path: Path) -> None:
    """Version 1 (issue 16's first round) had a per-agent checkpoints table nothing wrote."""
    path = tmp_path / "placement.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            AGENTS_AND_EDGES
            + "CREATE TABLE checkpoints (agent_id INTEGER PRIMARY KEY, edge_id TEXT NOT NULL,"
            " tick INTEGER NOT NULL, state BLOB NOT NULL, at REAL NOT NULL);"
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "INSERT INTO meta VALUES ('epoch', 7);"
            "INSERT INTO agents VALUES (3, 'boids', '{}', NULL, 0);"
            "PRAGMA user_version = 1;"
        )
    db.close()
    with AgentStore(path) as store:
        assert store.epoch() == 7
        assert store.agent_ids().tolist() == [3]
        assert save(store, "a", [3], 4, 1.0) == 1
        assert blocks(path) == 1


def test_checkpoint_blocks_skip_the_fsync_in_a_file_of_their_own(tmp_path: Path) -> None:
    """The blocks commit without an fsync in large pages; ``placement.db`` keeps FULL."""
    with AgentStore(tmp_path / "placement.db") as store:
        store.add_agents(0, 10, policy="boids")
        save(store, "a", [1, 2], 5, 1.0)
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        blocks_db = store.checkpoints._db
        assert blocks_db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert blocks_db.execute("PRAGMA page_size").fetchone()[0] == 65536
        assert blocks_db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert blocks(tmp_path / "placement.db") == 1


def make_version_2(path: Path, block_rows: list[tuple[int, int, float]]) -> None:
    """A ``placement.db`` as gateways before the checkpoint file wrote it: blocks of
    (block, agent id, value) rows at tick 5 inside it."""
    with sqlite3.connect(path) as db:
        db.executescript(
            AGENTS_AND_EDGES
            + "CREATE TABLE checkpoint_blocks (block INTEGER PRIMARY KEY, edge_id TEXT NOT NULL,"
            " at REAL NOT NULL, rows INTEGER NOT NULL, width INTEGER NOT NULL,"
            " ids BLOB NOT NULL, ticks BLOB NOT NULL, state BLOB NOT NULL);"
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "INSERT INTO meta VALUES ('epoch', 4);"
            "PRAGMA user_version = 2;"
        )
        for block, agent, value in block_rows:
            db.execute(
                "INSERT INTO checkpoint_blocks VALUES (?, 'a', 1.0, 1, 2, ?, ?, ?)",
                (
                    block,
                    np.array([agent], "<u4").tobytes(),
                    np.array([5], "<u8").tobytes(),
                    np.array([value, value], "<f4").tobytes(),
                ),
            )
    db.close()


def test_blocks_of_a_placement_db_of_version_2_move_into_their_own_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "placement.db"
    make_version_2(path, [(3, 1, 1.5), (8, 2, 2.5)])
    with AgentStore(path) as store:
        # in the main file before placement.db let go of them (its commits skip the fsync)
        assert (tmp_path / "checkpoints.db-wal").stat().st_size == 0
        assert store.epoch() == 4
        ticks, state, found = store.checkpoints.rows(np.array([1, 2, 3], dtype=np.uint32), 2)
        assert found.tolist() == [True, True, False]
        assert ticks.tolist() == [5, 5, 0]
        assert state[:2, 1].tolist() == [1.5, 2.5]
        assert save(store, "a", [1], 6, 9.0) == 1  # block 3 superseded: deleted
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
        version = db.execute("PRAGMA user_version").fetchone()[0]
    db.close()
    assert "checkpoint_blocks" not in tables
    assert version == 3
    assert blocks(path) == 2  # block 8 and the new one


def test_a_move_of_blocks_cut_short_is_redone_without_doubling_them(tmp_path: Path) -> None:
    """A crash after the blocks reached ``checkpoints.db`` but before ``placement.db`` let
    go of them: the next open moves them again, by block number, and keeps one of each."""
    path = tmp_path / "placement.db"
    make_version_2(path, [(3, 1, 1.5), (8, 2, 2.5)])
    with AgentStore(path):
        pass
    make_version_2(tmp_path / "again.db", [(3, 1, 1.5), (8, 2, 2.5)])
    with sqlite3.connect(path) as db, sqlite3.connect(tmp_path / "again.db") as again:
        db.execute(again.execute("SELECT sql FROM sqlite_schema WHERE name='checkpoint_blocks'")
                   .fetchone()[0])  # fmt: skip
        db.executemany(
            "INSERT INTO checkpoint_blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            again.execute("SELECT * FROM checkpoint_blocks").fetchall(),
        )
    db.close()
    again.close()
    with AgentStore(path) as store:
        ticks, _, found = store.checkpoints.rows(np.array([1, 2], dtype=np.uint32), 2)
        assert found.all()
        assert ticks.tolist() == [5, 5]
    assert blocks(path) == 2


def test_a_damaged_checkpoint_file_is_a_typed_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "placement.db"
    (tmp_path / "checkpoints.db").write_bytes(b"not a database, " * 512)
    with pytest.raises(AgentStoreError, match=r"checkpoints\.db is not usable.*move it aside"):
        AgentStore(path)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    frames=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sets(st.integers(0, 29), min_size=1, max_size=12),
            st.integers(1, 6),
        ),
        max_size=25,
    )
)
def test_memory_the_file_and_a_model_agree_after_any_frames(
    tmp_path_factory: pytest.TempPathFactory, frames: list[tuple[str, set[int], int]]
) -> None:
    """The index is updated only after its block is committed, and drops a block once no
    agent's newest row is in it: the file always holds exactly the blocks that memory
    points at, and reopening gives the same rows as a dict of newest rows."""
    path = tmp_path_factory.mktemp("checkpoints") / "placement.db"
    newest: dict[int, tuple[int, float]] = {}
    with AgentStore(path) as store:
        store.add_agents(0, 30, policy="boids")
        for number, (edge, ids, tick) in enumerate(frames):
            save(store, edge, sorted(ids), tick, float(number))
            for agent in ids:
                if agent not in newest or tick >= newest[agent][0]:
                    newest[agent] = (tick, float(number))
        live = set(store.checkpoints.block[store.checkpoints.block >= 0].tolist())
        assert blocks(path) == len(live)
    with AgentStore(path) as store:
        ticks, state, found = store.checkpoints.rows(np.arange(30, dtype=np.uint32), 2)
    assert {a for a in range(30) if found[a]} == set(newest)
    for agent, (tick, value) in newest.items():
        assert (int(ticks[agent]), float(state[agent, 0])) == (tick, value)


def test_the_wal_is_checkpointed_on_a_thread_that_ends_with_the_store(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "placement.db")
    try:
        store.add_agents(0, 10, policy="boids")
        for tick in range(1, WAL_CHECKPOINT_COMMITS + 1):
            save(store, "a", [1, 2], tick, float(tick))
        deadline = time.monotonic() + 10
        while store.checkpoints._wal_checkpointer.counts()[0] < 1:
            assert time.monotonic() < deadline, "no WAL checkpoint ran"
            time.sleep(0.02)
        registry = CollectorRegistry()
        registry.register(CheckpointFileCollector(store.checkpoints))
        name = "edgeswarm_placement_checkpoint_file_wal_checkpoints_total"
        assert (registry.get_sample_value(name) or 0) >= 1
        failed = "edgeswarm_placement_checkpoint_file_failed_wal_checkpoints_total"
        assert registry.get_sample_value(failed) == 0
    finally:
        store.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("checkpoints-wal")]
    assert fds_on(tmp_path / "checkpoints.db") == []


def test_a_failed_move_leaves_the_blocks_in_placement_db_and_no_file_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "placement.db"
    make_version_2(path, [(3, 1, 1.5), (8, 2, 2.5)])
    (tmp_path / "checkpoints.db").write_bytes(b"not a database, " * 512)
    with pytest.raises(AgentStoreError, match=r"checkpoints\.db is not usable"):
        AgentStore(path)
    assert fds_on(path) == []
    assert fds_on(tmp_path / "checkpoints.db") == []
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM checkpoint_blocks").fetchone()[0] == 2
    db.close()
    (tmp_path / "checkpoints.db").rename(tmp_path / "damaged.db")  # the operator moves it aside
    with AgentStore(path) as store:
        _, _, found = store.checkpoints.rows(np.array([1, 2], dtype=np.uint32), 2)
        assert found.all()


def test_a_damaged_block_is_a_typed_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "placement.db"
    with AgentStore(path) as store:
        store.add_agents(0, 10, policy="boids")
        save(store, "a", [1, 2, 3], 5, 1.0)
    with sqlite3.connect(tmp_path / "checkpoints.db") as db:
        db.execute("UPDATE checkpoint_blocks SET rows = 7")
    db.close()
    with pytest.raises(AgentStoreError, match=r"checkpoints\.db: block \d+ is damaged"):
        AgentStore(path)
    assert fds_on(tmp_path / "checkpoints.db") == []
