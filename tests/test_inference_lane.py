"""The heavy lane's logic without sockets: batcher, node pool, retries, deadlines, answers."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from edgeswarm.inference.batcher import Batcher, LaneRequest
from edgeswarm.inference.lane import Answer, Forward, HeavyLane, LaneConfig
from edgeswarm.inference.pool import CircuitState, NodePool
from edgeswarm.wire import InferRequest, InferStatus


def lane_request(
    rows: int, *, at: float = 0.0, deadline: float = 1.0, origin: str = "e"
) -> LaneRequest:
    return LaneRequest(
        origin=origin,
        request_id=0,
        model="m",
        agent_ids=np.arange(rows, dtype=np.uint32),
        inputs=np.ones((rows, 4), np.float32),
        received=at,
        deadline=at + deadline,
    )


def infer_request(
    request_id: int, rows: int = 2, *, k: int = 4, deadline_ms: int = 100
) -> InferRequest:
    return InferRequest(
        request_id=request_id,
        model="m",
        deadline_ms=deadline_ms,
        tick=0,
        agent_ids=np.arange(rows, dtype=np.uint32) + 100 * request_id,
        inputs=np.full((rows, k), float(request_id), np.float32),
    )


def drain(lane: HeavyLane) -> tuple[list[Forward], list[Answer]]:
    forwards: list[Forward] = []
    answers: list[Answer] = []
    while (action := lane.next_action()) is not None:
        if isinstance(action, Forward):
            forwards.append(action)
        else:
            answers.append(action)
    return forwards, answers


def model_of(forward: Forward) -> np.ndarray:
    """What a node computes for a batch: the first input column, doubled, as (n, 2)."""
    x = forward.batch.inputs()
    return np.stack([2 * x[:, 0], -x[:, 0]], axis=1).astype(np.float32)


# --- batcher ---------------------------------------------------------------


def test_a_full_batch_leaves_without_waiting_and_requests_stay_whole() -> None:
    batcher = Batcher("m", max_batch_rows=512, max_wait_s=0.002)
    for _ in range(3):
        assert batcher.add(lane_request(200))
    assert batcher.ready(0.0)  # 600 rows >= 512: no wait
    batch = batcher.take(0.0)
    assert batch is not None
    assert [r.rows for r in batch.requests] == [200, 200]  # 400: a third would pass 512
    assert batcher.queued_rows == 200
    assert not batcher.ready(0.001)
    assert batcher.ready(0.002)  # the rest leaves when the oldest waited max_wait


def test_a_request_larger_than_a_batch_goes_alone() -> None:
    batcher = Batcher("m", max_batch_rows=8, max_queued_rows=64)
    batcher.add(lane_request(20))
    batcher.add(lane_request(1))
    batch = batcher.take(0.0)
    assert batch is not None
    assert [r.rows for r in batch.requests] == [20]


def test_the_queue_is_bounded_in_rows() -> None:
    batcher = Batcher("m", max_batch_rows=4, max_queued_rows=10)
    assert batcher.add(lane_request(6))
    assert not batcher.add(lane_request(5))
    assert batcher.queued_rows == 6
    assert batcher.add(lane_request(4))


def test_expired_requests_come_back_and_wake_at_is_the_earliest_due() -> None:
    batcher = Batcher("m", max_batch_rows=100, max_wait_s=0.002)
    batcher.add(lane_request(1, at=0.0, deadline=0.010))
    batcher.add(lane_request(1, at=0.0, deadline=0.001))
    assert batcher.wake_at() == pytest.approx(0.001)
    [expired] = batcher.expire(0.0015)
    assert expired.deadline == pytest.approx(0.001)
    assert batcher.queued_rows == 1
    assert batcher.wake_at() == pytest.approx(0.002)


@pytest.mark.parametrize("seed", range(5))
def test_wake_at_and_expire_match_a_scan_of_the_queue(seed: int) -> None:
    """The batcher keeps deadlines in a heap (no scan per event): whatever is added,
    taken, expired or removed, its answers are those of a scan of what is queued."""
    rng = random.Random(seed)
    batcher = Batcher("m", max_batch_rows=8, max_wait_s=0.002, max_queued_rows=10_000)
    queued: list[LaneRequest] = []
    now = 0.0
    for _ in range(3000):
        now += rng.uniform(0, 0.001)
        op = rng.random()
        if op < 0.6:
            request = lane_request(
                rng.randint(1, 5),
                at=now,
                deadline=rng.uniform(0.001, 0.05),
                origin=rng.choice("ab"),
            )
            assert batcher.add(request)
            queued.append(request)
        elif op < 0.8:
            batch = batcher.take(now, force=True)
            taken = list(batch.requests) if batch is not None else []
            assert taken == queued[: len(taken)]
            del queued[: len(taken)]
        elif op < 0.95:
            expired = batcher.expire(now)
            assert expired == [r for r in queued if r.deadline <= now]
            queued = [r for r in queued if r.deadline > now]
        else:
            origin = rng.choice("ab")
            assert batcher.remove(origin) == [r for r in queued if r.origin == origin]
            queued = [r for r in queued if r.origin != origin]
        expected = (
            min(queued[0].received + 0.002, min(r.deadline for r in queued)) if queued else None
        )
        assert batcher.wake_at() == expected
        assert batcher.queued_rows == sum(r.rows for r in queued)
        assert len(batcher._deadlines) <= 2 * len(queued) + 64  # stale entries stay bounded


def test_split_gives_each_request_its_rows() -> None:
    batcher = Batcher("m", max_batch_rows=10, max_wait_s=0)
    batcher.add(lane_request(2, origin="a"))
    batcher.add(lane_request(3, origin="b"))
    batch = batcher.take(0.0)
    assert batch is not None
    outputs = np.arange(10, dtype=np.float32).reshape(5, 2)
    parts = list(batch.split(outputs))
    assert [r.origin for r, _ in parts] == ["a", "b"]
    np.testing.assert_array_equal(parts[1][1], outputs[2:])
    with pytest.raises(ValueError, match="output rows"):
        list(batch.split(outputs[:4]))


# --- node pool -------------------------------------------------------------


def test_least_outstanding_wins_and_failures_open_the_circuit() -> None:
    pool = NodePool(max_outstanding=2, failure_threshold=2, cooldown_s=1.0)
    a, b = pool.add("a", "a", ["m"]), pool.add("b", "b", ["m"])
    pool.sent(a, 0.0)
    assert pool.pick("m", 0.0) is b
    pool.sent(b, 0.0)
    pool.sent(a, 0.0)
    assert pool.pick("m", 0.0) is b  # a has 2 (its limit), b has 1
    pool.sent(b, 0.0)
    assert pool.pick("m", 0.0) is None  # both full: the batch waits
    assert not pool.failed(a, 0.0)
    assert pool.failed(a, 0.0)  # second failure in a row opens it
    assert a.circuit(0.5) is CircuitState.OPEN
    assert pool.pick("m", 0.5, exclude=frozenset({"b"})) is None
    assert a.circuit(1.0) is CircuitState.HALF_OPEN
    assert pool.pick("m", 1.0, exclude=frozenset({"b"})) is a
    pool.sent(a, 1.0)
    assert pool.pick("m", 1.0, exclude=frozenset({"b"})) is None  # one trial at a time
    pool.succeeded(a)
    assert a.circuit(1.0) is CircuitState.CLOSED


# --- the lane --------------------------------------------------------------


def lane(**overrides: float) -> HeavyLane:
    config = LaneConfig(max_batch_rows=512, max_wait_s=0.002, attempt_timeout_s=0.05, **overrides)  # type: ignore[arg-type]
    heavy = HeavyLane(config)
    heavy.node_up("A", "node-a", ["m"], 0.0)
    return heavy


def test_requests_of_many_edges_share_a_batch_and_get_their_own_rows() -> None:
    heavy = lane()
    heavy.submit("edge-1", infer_request(1, rows=2), 0.0)
    heavy.submit("edge-2", infer_request(2, rows=3), 0.0005)
    assert drain(heavy) == ([], [])
    assert heavy.wake_at() == pytest.approx(0.002)
    heavy.tick(0.002)
    [forward], _ = drain(heavy)
    assert forward.node == "A"
    assert forward.batch.rows == 5
    heavy.attempt_answered(forward.node, forward.attempt_id, model_of(forward), 0.003)
    _, answers = drain(heavy)
    assert [(a.origin, a.request_id, a.status) for a in answers] == [
        ("edge-1", 1, InferStatus.OK),
        ("edge-2", 2, InferStatus.OK),
    ]
    np.testing.assert_array_equal(answers[1].outputs[:, 0], [4.0, 4.0, 4.0])
    np.testing.assert_array_equal(answers[1].agent_ids, [200, 201, 202])
    assert heavy.unanswered("edge-1") == heavy.unanswered("edge-2") == 0


def test_a_failed_node_is_retried_elsewhere_and_a_late_answer_is_dropped() -> None:
    heavy = lane()
    heavy.node_up("B", "node-b", ["m"], 0.0)
    heavy.submit("e", infer_request(1), 0.0)
    heavy.tick(0.002)
    [first], _ = drain(heavy)
    heavy.tick(0.002 + 0.05)  # no answer within attempt_timeout_s
    [second], answers = drain(heavy)
    assert answers == []
    assert second.retry
    assert second.node != first.node
    heavy.attempt_answered(second.node, second.attempt_id, model_of(second), 0.06)
    heavy.attempt_answered(
        first.node, first.attempt_id, model_of(first), 0.07
    )  # the slow node, late
    _, answers = drain(heavy)
    assert [(a.request_id, a.status) for a in answers] == [(1, InferStatus.OK)]
    assert heavy.counters.late_answers == 1
    assert heavy.counters.retries == 1


def test_a_node_that_goes_away_has_its_batches_retried() -> None:
    heavy = lane()
    heavy.node_up("B", "node-b", ["m"], 0.0)
    heavy.submit("e", infer_request(1), 0.0)
    heavy.tick(0.002)
    [first], _ = drain(heavy)
    heavy.node_down(first.node, 0.003)
    [second], _ = drain(heavy)
    assert second.node != first.node
    heavy.attempt_answered(second.node, second.attempt_id, model_of(second), 0.004)
    _, answers = drain(heavy)
    assert [a.status for a in answers] == [InferStatus.OK]


def test_a_deadline_gives_an_explicit_timeout_and_nothing_later() -> None:
    heavy = lane()
    heavy.submit("e", infer_request(1, deadline_ms=10), 0.0)
    heavy.tick(0.002)
    [forward], _ = drain(heavy)
    heavy.tick(0.010)
    _, answers = drain(heavy)
    assert [(a.request_id, a.status) for a in answers] == [(1, InferStatus.TIMEOUT)]
    assert answers[0].outputs.shape == (0, 1)
    heavy.attempt_answered(forward.node, forward.attempt_id, model_of(forward), 0.020)
    assert drain(heavy) == ([], [])


def test_a_queued_request_past_its_deadline_times_out() -> None:
    heavy = HeavyLane(LaneConfig(max_wait_s=0.002))
    heavy.node_up("A", "a", ["m"], 0.0)
    heavy.pool.get("A").outstanding = heavy.config.max_outstanding  # type: ignore[union-attr]
    heavy.submit("e", infer_request(1, deadline_ms=5), 0.0)
    heavy.tick(0.005)
    forwards, answers = drain(heavy)
    assert forwards == []
    assert [(a.status, a.message) for a in answers] == [
        (InferStatus.TIMEOUT, "deadline passed queued")
    ]


def test_a_due_batch_no_node_can_take_waits_for_an_answer_not_the_clock() -> None:
    """With every node's window full, a due batch must not make wake_at a time already
    past: the runner would fire its timer at once, again and again, taking the CPU the
    gateway needs to read the answers that free the window (issue 17)."""
    heavy = HeavyLane(LaneConfig(max_wait_s=0.002, max_outstanding=1))
    heavy.node_up("A", "a", ["m"], 0.0)
    heavy.submit("e", infer_request(1, deadline_ms=100), 0.0)
    heavy.tick(0.002)
    [first], _ = drain(heavy)
    heavy.submit("e", infer_request(2, deadline_ms=100), 0.003)
    heavy.tick(0.006)  # the second batch is due; the node's window is full
    assert drain(heavy) == ([], [])
    wake = heavy.wake_at()
    assert wake is not None
    assert wake > 0.006
    # the next due: a deadline (request 1 in flight: 0.100) or the attempt's timeout
    assert wake == pytest.approx(min(0.100, 0.002 + heavy.config.attempt_timeout_s))
    heavy.attempt_answered("A", first.attempt_id, model_of(first), 0.007)
    forwards, answers = drain(heavy)  # the answer frees the window: the batch leaves now
    assert [a.request_id for a in answers] == [1]
    assert [f.batch.requests[0].request_id for f in forwards] == [2]


def test_the_gateway_window_fits_in_what_a_node_accepts() -> None:
    """A node refuses calls past its ``max_pending``: one gateway's default window of
    batches in flight to a node must stay within it, or batches come back REJECTED."""
    from edgeswarm.inference.node import NodeConfig
    from edgeswarm.inference.pool import DEFAULT_MAX_OUTSTANDING

    assert LaneConfig().max_outstanding == DEFAULT_MAX_OUTSTANDING
    assert NodeConfig().max_pending >= DEFAULT_MAX_OUTSTANDING


def test_rejections_are_immediate_answers() -> None:
    heavy = HeavyLane(LaneConfig(infer_window=1, max_batch_rows=4, max_queued_rows=4))
    heavy.submit("e", infer_request(1), 0.0)  # no node yet
    heavy.node_up("A", "a", ["m"], 0.0)
    heavy.submit("e", infer_request(2, rows=3), 0.0)
    heavy.submit("e", infer_request(3), 0.0)  # window of 1: request 2 is unanswered
    heavy.submit("f", infer_request(4, rows=2), 0.0)  # 3 + 2 rows > 4: queue full
    _, answers = drain(heavy)
    assert [(a.request_id, a.status) for a in answers] == [
        (1, InferStatus.REJECTED),
        (3, InferStatus.REJECTED),
        (4, InferStatus.REJECTED),
    ]
    assert "no inference node" in answers[0].message


def test_a_model_failure_is_not_retried() -> None:
    heavy = lane()
    heavy.node_up("B", "b", ["m"], 0.0)
    heavy.submit("e", infer_request(1), 0.0)
    heavy.tick(0.002)
    [forward], _ = drain(heavy)
    heavy.attempt_failed(forward.node, forward.attempt_id, 0.003, "wrong width", retry=False)
    forwards, answers = drain(heavy)
    assert forwards == []
    assert [(a.status, a.message) for a in answers] == [(InferStatus.FAILED, "wrong width")]


def test_rows_of_another_width_never_share_a_batch() -> None:
    heavy = lane()
    heavy.submit("e", infer_request(1, k=4), 0.0)
    heavy.submit("e", infer_request(2, k=5), 0.0)
    heavy.tick(0.002)
    forwards, _ = drain(heavy)
    assert sorted(f.batch.inputs().shape[1] for f in forwards) == [4, 5]


def test_a_node_cannot_answer_what_another_node_was_asked() -> None:
    heavy = lane()
    heavy.node_up("B", "b", ["m"], 0.0)
    heavy.submit("e", infer_request(1), 0.0)
    heavy.tick(0.002)
    [forward] = drain(heavy)[0]
    other = "B" if forward.node == "A" else "A"
    heavy.attempt_answered(other, forward.attempt_id, np.zeros((2, 2), np.float32), 0.003)
    heavy.attempt_failed(other, forward.attempt_id, 0.003, "forged", retry=False)
    assert drain(heavy) == ([], [])
    assert heavy.counters.foreign_answers == 2
    heavy.attempt_answered(forward.node, forward.attempt_id, model_of(forward), 0.004)
    assert [a.outputs[0, 0] for a in drain(heavy)[1]] == [2.0]


def test_a_gone_origin_is_not_answered() -> None:
    heavy = lane()
    heavy.submit("e", infer_request(1), 0.0)
    heavy.submit("f", infer_request(2), 0.0)
    heavy.tick(0.002)
    [forward], _ = drain(heavy)
    heavy.origin_gone("e")
    heavy.attempt_answered(forward.node, forward.attempt_id, model_of(forward), 0.003)
    _, answers = drain(heavy)
    assert [a.origin for a in answers] == ["f"]
    assert heavy.counters.abandoned == 1


@pytest.mark.parametrize("seed", range(20))
def test_every_request_is_answered_exactly_once_whatever_the_nodes_do(seed: int) -> None:
    """Random nodes that answer, fail, stall, vanish and come back: one answer each."""
    rng = random.Random(seed)
    heavy = HeavyLane(
        LaneConfig(max_batch_rows=16, max_wait_s=0.002, attempt_timeout_s=0.02, cooldown_s=0.05)
    )
    nodes = {"A", "B", "C"}
    for node in nodes:
        heavy.node_up(node, node, ["m"], 0.0)
    outstanding: dict[int, Forward] = {}
    answers: Counter[int] = Counter()
    statuses: Counter[InferStatus] = Counter()
    now, submitted = 0.0, 0
    for step in range(600):
        now += rng.uniform(0, 0.004)
        if step < 400 and rng.random() < 0.6:
            submitted += 1
            rows = rng.randint(1, 6)
            heavy.submit(
                f"e{rng.randint(0, 3)}",
                infer_request(submitted, rows, deadline_ms=rng.randint(5, 80)),
                now,
            )
        if outstanding and rng.random() < 0.5:
            attempt_id = rng.choice(sorted(outstanding))
            forward = outstanding.pop(attempt_id)
            fate = rng.random()
            if fate < 0.7:
                heavy.attempt_answered(forward.node, attempt_id, model_of(forward), now)
            elif fate < 0.85:
                heavy.attempt_failed(forward.node, attempt_id, now, "boom", retry=True)
            # else: the node stalls on it forever
        if rng.random() < 0.02:
            victim = rng.choice(sorted(nodes))
            heavy.node_down(victim, now)
            outstanding = {k: f for k, f in outstanding.items() if f.node != victim}
            heavy.node_up(victim, victim, ["m"], now)
        if (wake := heavy.wake_at()) is not None and wake <= now:
            heavy.tick(now)
        while (action := heavy.next_action()) is not None:
            if isinstance(action, Forward):
                outstanding[action.attempt_id] = action
            else:
                answers[action.request_id] += 1
                statuses[action.status] += 1
                if action.status is InferStatus.OK:
                    assert action.outputs[0, 0] == 2 * action.request_id
    for _ in range(200):  # let every deadline pass
        now += 0.01
        heavy.tick(now)
        while (action := heavy.next_action()) is not None:
            if isinstance(action, Answer):
                answers[action.request_id] += 1
                statuses[action.status] += 1
    assert set(answers) == set(range(1, submitted + 1))
    assert set(answers.values()) == {1}
    assert statuses[InferStatus.OK] > 0
