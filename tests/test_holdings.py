"""What the observation log holds (``gateway/log/holdings.py``), in this process: runs,
gaps and sequence epochs kept up to date commit by commit, and the same rebuilt from a
real index at open."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeswarm.gateway.log import FsyncPolicy, LogRecord
from edgeswarm.gateway.log.holdings import EdgeState, EpochStanding, Holdings, Run
from edgeswarm.gateway.log.index import index_row, insert_rows, open_index

EDGE = "edge-h"
TOP = 2**63 - 1
"""The largest sequence number SQLite can store."""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_index(
        tmp_path / "index.db",
        fsync=FsyncPolicy("normal"),
        busy_timeout_s=1.0,
        wal_limit_bytes=1 << 20,
    )
    yield connection
    connection.close()


def record(seq: int, edge_id: str = EDGE) -> LogRecord:
    return LogRecord(edge_id, seq, tick=seq, count=2, payload=b"", received_at=0.0)


def commit(db: sqlite3.Connection, holdings: Holdings, *seqs: int, edge_id: str = EDGE) -> None:
    """Store ``seqs`` in the index and tell ``holdings``, as the log's writer does."""
    records = [record(seq, edge_id) for seq in seqs]
    for r in records:
        holdings.appended(r.edge_id, r.seq)
    assert holdings.fresh(records) == [True] * len(records)
    assert insert_rows(db, [index_row(r, (None, None, None, None)) for r in records]) == [
        True
    ] * len(records)
    holdings.committed(records)


def state_of(holdings: Holdings, edge_id: str = EDGE) -> EdgeState:
    return holdings._edges[edge_id]


def test_a_gap_is_held_apart_and_closing_it_joins_the_run() -> None:
    state = EdgeState()
    for seq in (1, 2, 4, 5, 7):
        state.add(record(seq))
    assert state.runs == [Run(0, 2)]
    assert state.above == {4, 5, 7}
    assert state.high_water() == 2
    assert [state.holds(n) for n in range(9)] == [
        False, True, True, False, True, True, False, True, False
    ]  # fmt: skip
    state.add(record(3))
    assert state.runs == [Run(0, 5)]
    assert state.above == {7}  # what joined the run is no longer held apart
    assert state.high_water() == 5
    assert state.max_seq == 7
    assert (state.batches, state.observations) == (6, 12)


def test_a_gap_closed_in_a_middle_epoch_joins_what_that_epoch_held_apart() -> None:
    state = EdgeState()
    state.add(record(1))
    state.start_run(10)
    state.start_run(20)
    state.add(record(12))  # epoch of base 10: 11 missing, 12 held apart
    assert state.above == {12}
    state.add(record(11))
    assert state.runs == [Run(0, 1), Run(10, 12), Run(20, 20)]
    assert state.above == set()
    assert state.high_water(10) == 12


def test_high_water_from_a_number_inside_an_epoch_counts_from_there() -> None:
    """Every number ``floor+1 .. n`` stored, for a floor that is no epoch's base too."""
    state = EdgeState()
    state.start_run(10)
    state.start_run(20)
    for seq in range(11, 19):
        state.add(record(seq))
    assert state.high_water(15) == 18
    assert state.high_water(10) == 18
    assert state.high_water(18) == 18
    assert state.high_water(19) == 19  # 20 is not stored: nothing past the floor


def test_numbers_below_one_are_held_but_never_part_of_a_run() -> None:
    state = EdgeState()
    state.add(record(0))
    state.add(record(-3))
    assert state.below == {0, -3}
    assert state.holds(0)
    assert state.holds(-3)
    assert not state.holds(-1)
    assert state.high_water() == 0


def test_high_water_of_an_empty_state_is_its_floor() -> None:
    state = EdgeState()
    assert state.high_water() == 0
    assert state.high_water(12) == 12
    state.add(record(2))
    assert state.high_water() == 0  # seq 1 missing


def test_a_new_epoch_of_an_edge_never_seen_starts_at_zero(db: sqlite3.Connection) -> None:
    holdings = Holdings(db)
    assert holdings.standing("nobody", 0) is EpochStanding.CURRENT
    assert holdings.open_epoch(db, "nobody", 0) == 0  # epoch 0 needs no registration
    assert holdings.high_water("nobody") == 0
    assert holdings.high_water("nobody", 40) == 40
    assert holdings.standing("fresh", 3) is EpochStanding.NEW
    assert holdings.open_epoch(db, "fresh", 3) == 0
    assert holdings.standing("fresh", 3) is EpochStanding.CURRENT
    assert holdings.open_epoch(db, "fresh", 3) == 0  # asked again: the same base
    commit(db, holdings, 1, 2, edge_id="fresh")
    assert holdings.snapshot()["fresh"].high_water == 2  # one run from 0, not two
    assert state_of(holdings, "fresh").runs == [Run(0, 2)]


def test_a_new_epoch_starts_above_every_number_queued_or_stored(db: sqlite3.Connection) -> None:
    holdings = Holdings(db)
    commit(db, holdings, 1, 2, 3)
    holdings.appended(EDGE, 9)  # queued, not committed yet
    holdings.appended(EDGE, 6)  # an older number queued later does not lower it
    assert holdings.open_epoch(db, EDGE, 5) == 9
    assert holdings.epochs.base(EDGE, 5) == 9
    assert holdings.epochs.bases() == {EDGE: [9]}
    single = Holdings(db)  # reopened: nothing queued, the stored numbers decide
    assert single.epochs.base(EDGE, 5) == 9
    assert single.open_epoch(db, EDGE, 8) == 3
    holdings.appended("first", 1)
    assert holdings.open_epoch(db, "first", 2) == 1


def test_epochs_stand_current_new_or_stale(db: sqlite3.Connection) -> None:
    holdings = Holdings(db)
    commit(db, holdings, 1)
    holdings.open_epoch(db, EDGE, 5)
    holdings.open_epoch(db, EDGE, 7)
    assert holdings.standing(EDGE, 7) is EpochStanding.CURRENT
    assert holdings.standing(EDGE, 5) is EpochStanding.STALE
    assert holdings.standing(EDGE, 0) is EpochStanding.STALE
    assert holdings.standing(EDGE, 6) is EpochStanding.NEW
    assert holdings.standing("other", 5) is EpochStanding.NEW
    reopened = Holdings(db)
    assert reopened.standing(EDGE, 5) is EpochStanding.STALE
    assert reopened.standing(EDGE, 7) is EpochStanding.CURRENT


def test_a_run_filled_to_the_next_base_goes_on_into_that_epoch(db: sqlite3.Connection) -> None:
    """Epoch 0 had 1..2 stored and 3 queued when epoch 5 began at base 3; 3 commits late:
    the high-water mark from 0 covers 1..5, the new epoch's from its base 4..5."""
    holdings = Holdings(db)
    commit(db, holdings, 1, 2)
    holdings.appended(EDGE, 3)
    assert holdings.open_epoch(db, EDGE, 5) == 3
    commit(db, holdings, 4, 5)
    assert holdings.high_water(EDGE) == 2
    assert holdings.high_water(EDGE, 3) == 5
    commit(db, holdings, 3)
    assert holdings.high_water(EDGE) == 5
    assert holdings.snapshot()[EDGE].high_water == 5
    assert holdings.high_water(EDGE, 3) == 5
    assert state_of(holdings).runs == [Run(0, 3), Run(3, 5)]


def epoch_history(db: sqlite3.Connection) -> Holdings:
    """Three epochs after epoch 0, with gaps, late numbers of an old epoch, numbers below
    one and the largest number there is."""
    holdings = Holdings(db)
    commit(db, holdings, 1, 2, 3, 6, 0)  # epoch 0: a gap at 4..5
    assert holdings.open_epoch(db, EDGE, 1) == 6
    commit(db, holdings, 7, 8, 10)  # epoch 1 from 6: a gap at 9
    commit(db, holdings, 4)  # epoch 0 late
    assert holdings.open_epoch(db, EDGE, 2) == 10
    commit(db, holdings, 11, 12, -2)
    commit(db, holdings, TOP - 1)
    assert holdings.open_epoch(db, EDGE, 3) == TOP - 1
    commit(db, holdings, TOP)
    commit(db, holdings, 1, 2, 3, edge_id="plain")  # an edge without epochs
    commit(db, holdings, 1, 2, 3, edge_id="joined")  # epochs that follow on without a gap
    assert holdings.open_epoch(db, "joined", 1) == 3
    commit(db, holdings, 4, 5, edge_id="joined")
    assert holdings.open_epoch(db, "joined", 2) == 5
    commit(db, holdings, 6, edge_id="joined")
    return holdings


def test_holdings_rebuilt_from_the_index_are_the_ones_kept_live(db: sqlite3.Connection) -> None:
    live = epoch_history(db)
    rebuilt = Holdings(db)
    assert rebuilt.snapshot() == live.snapshot()
    for edge_id in (EDGE, "plain", "joined"):
        live_state, rebuilt_state = state_of(live, edge_id), state_of(rebuilt, edge_id)
        assert rebuilt_state.runs == live_state.runs
        assert rebuilt_state.above == live_state.above
        assert rebuilt_state.below == live_state.below
    assert state_of(rebuilt).runs == [Run(0, 4), Run(6, 8), Run(10, 12), Run(TOP - 1, TOP)]
    assert state_of(rebuilt).above == {6, 10, TOP - 1}
    assert state_of(rebuilt).below == {0, -2}
    for floor, high in ((0, 4), (6, 8), (10, 12), (TOP - 1, TOP)):
        assert rebuilt.high_water(EDGE, floor) == high
    assert state_of(rebuilt, "joined").runs == [Run(0, 3), Run(3, 5), Run(5, 6)]
    assert rebuilt.snapshot()["joined"].high_water == 6
    assert rebuilt.count() == live.count() == 14 + 3 + 6
    held = {-2, 0, 1, 2, 3, 4, 6, 7, 8, 10, 11, 12, TOP - 1, TOP}
    candidates = [*range(-3, 15), TOP - 2, TOP - 1, TOP]
    assert rebuilt.fresh([record(n) for n in candidates]) == [n not in held for n in candidates]
