"""The gateway's per-batch lookup of swarm agent ids (gateway/agent_ids.py) against a
plain reference: the rows of the ids that are swarm agents, by dense table, binary
search, or one slice for a run of consecutive ids."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeswarm.gateway.agent_ids import consecutive_rows, dense_table, holds_run, rows_of


def reference(ids: np.ndarray, all_ids: np.ndarray) -> list[int]:
    where = {int(agent): row for row, agent in enumerate(all_ids)}
    return [where[int(agent)] for agent in ids if int(agent) in where]


swarms = st.lists(st.integers(0, 3000), unique=True, max_size=400).map(
    lambda ids: np.array(sorted(ids), dtype=np.uint32)
)


@st.composite
def batches(draw: st.DrawFn, all_ids: np.ndarray) -> np.ndarray:
    kind = draw(st.sampled_from(["run", "run_in_swarm", "any"]))
    if kind == "run_in_swarm" and all_ids.size:
        start = draw(st.integers(0, all_ids.size - 1))
        first = int(all_ids[start])
        n = draw(st.integers(1, 50))
        return np.arange(first, first + n, dtype=np.uint32)
    if kind == "run":
        first, n = draw(st.integers(0, 3100)), draw(st.integers(0, 60))
        return np.arange(first, first + n, dtype=np.uint32)
    values = draw(st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 3100), max_size=60))
    return np.array(values, dtype=np.uint32)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), all_ids=swarms)
def test_rows_match_the_reference_by_every_path(data: st.DataObject, all_ids: np.ndarray) -> None:
    ids = data.draw(batches(all_ids))
    expected = reference(ids, all_ids)
    dense = dense_table(all_ids)
    assert rows_of(ids, all_ids, dense).tolist() == expected
    assert rows_of(ids, all_ids, None).tolist() == expected  # binary search
    run = consecutive_rows(ids, dense)
    if run is not None:
        assert list(range(run.start, run.stop)) == expected
        assert len(expected) == ids.size  # every id of the batch is a swarm agent


def test_a_batch_of_an_edges_table_in_order_is_one_slice() -> None:
    all_ids = np.arange(100, 200, dtype=np.uint32)
    dense = dense_table(all_ids)
    assert consecutive_rows(np.arange(120, 140, dtype=np.uint32), dense) == slice(20, 40)
    assert consecutive_rows(np.arange(190, 210, dtype=np.uint32), dense) is None  # past the end
    gap = np.delete(all_ids, 30)  # agent 130 is not in the swarm
    assert consecutive_rows(np.arange(120, 140, dtype=np.uint32), dense_table(gap)) is None
    shuffled = np.array([121, 120, 122], dtype=np.uint32)
    assert consecutive_rows(shuffled, dense) is None  # the same set, but not ascending
    repeated = np.array([120, 120, 122], dtype=np.uint32)
    assert consecutive_rows(repeated, dense) is None


def test_sparse_ids_use_binary_search() -> None:
    assert dense_table(np.array([1, 10_000_000], dtype=np.uint32)) is None
    assert dense_table(np.array([], dtype=np.uint32)) is None


@settings(max_examples=300, deadline=None)
@given(data=st.data(), all_ids=swarms)
def test_a_run_is_held_exactly_when_every_id_of_it_is(
    data: st.DataObject, all_ids: np.ndarray
) -> None:
    """The CHECKPOINT sender check's shortcut never says "held" for an id that is not."""
    ids = data.draw(batches(all_ids))
    run = ids.size > 0 and bool((np.diff(ids.astype(np.int64)) == 1).all())
    assert holds_run(all_ids, ids) == (run and bool(np.isin(ids, all_ids).all()))


def test_a_run_of_held_agents_is_recognised_and_a_gap_is_not() -> None:
    held = np.array([5, 6, 7, 8, 9, 20, 21], dtype=np.uint32)
    assert holds_run(held, np.array([6, 7, 8], dtype=np.uint32))
    assert holds_run(held, np.array([20, 21], dtype=np.uint32))
    assert not holds_run(held, np.array([8, 9, 10], dtype=np.uint32))  # 10 is not held
    assert not holds_run(held, np.array([9, 10, 11], dtype=np.uint32))
    assert not holds_run(held, np.array([21, 22], dtype=np.uint32))  # past the end
    assert not holds_run(held, np.array([7, 6, 8], dtype=np.uint32))  # not ascending
    assert not holds_run(held, np.array([], dtype=np.uint32))
    assert not holds_run(np.array([], dtype=np.uint32), np.array([3], dtype=np.uint32))
