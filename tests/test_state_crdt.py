"""SwarmDocument: counters, observed-remove sets and flags on real pycrdt docs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from edgeswarm.state import (
    InvalidKey,
    MalformedUpdate,
    SwarmDocument,
    UpdateBatcher,
    client_id_for,
    schema,
)

WRITERS = ["edge-0", "edge-1", "edge-2", "gw-0"]
COUNTER_KEYS = ["g/a", "g/b"]
SET_KEYS = ["g/s"]
ITEMS = ["x", "y", "z"]
FLAG_KEYS = ["g/f"]


def exchange(*documents: SwarmDocument) -> None:
    """Full state exchange between every pair (a reliable mesh)."""
    for source in documents:
        for target in documents:
            if source is not target:
                target.apply_update(source.encode_update(target.state_vector()))


def test_counter_add_and_value() -> None:
    doc = SwarmDocument("edge-0")
    doc.counter_add("g/hits", 5)
    doc.counter_add("g/hits", -2)
    doc.counter_add("g/hits", 0)
    assert doc.counter_value("g/hits") == 3
    assert doc.counter_value("g/none") == 0
    assert doc.snapshot()["counters"] == {"g/hits": 3}


def test_a_document_writes_as_its_writer_and_incarnation() -> None:
    doc = SwarmDocument("edge-7")
    assert (doc.writer_id, doc.client_id) == ("edge-7", client_id_for("edge-7"))
    later = SwarmDocument("edge-7", incarnation=3)
    assert later.client_id == client_id_for("edge-7", 3) != doc.client_id
    # what the edge announces in HELLO (state_incarnation): the gateway binds the id to it
    assert (doc.incarnation, later.incarnation) == (0, 3)
    assert SwarmDocument("edge-7", incarnation=3, client_id=1234).client_id == 1234
    assert SwarmDocument("edge-7", client_id=1234).doc.client_id == 1234


def test_refusals_say_what_was_wrong() -> None:
    doc = SwarmDocument("edge-0")
    with pytest.raises(InvalidKey, match=r"^counter delta must be an int, got 1\.5$"):
        doc.counter_add("g/c", 1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey, match=r"^flag value must be a bool, got 1$"):
        doc.flag_set("g/f", 1)  # type: ignore[arg-type]
    with pytest.raises(MalformedUpdate, match=r"^update must be bytes, got str$"):
        doc.apply_update("text")  # type: ignore[arg-type]
    garbage = b"\xff" * 8
    with pytest.raises(MalformedUpdate) as info:
        doc.apply_update(garbage)
    with pytest.raises(ValueError, match=r".") as yrs:
        Doc().apply_update(garbage)
    assert str(info.value) == str(yrs.value)  # Yrs' own words, passed on


def test_entries_of_the_wrong_type_from_a_peer_are_ignored() -> None:
    """A peer can write any value under any entry of a root map (they are plain maps):
    a non-number in our own counter entry counts as 0, a non-bool flag as unset."""
    ours = SwarmDocument("edge-0")
    ours.counter_add("g/c", 5)
    hostile = SwarmDocument("edge-9")
    hostile.apply_update(ours.encode_update())
    own_entry = schema.positive_entry(schema.writer_name(ours.client_id))
    hostile.doc.get(schema.counter_root("g/c"), type=Map)[own_entry] = "junk"
    hostile.doc.get(schema.FLAGS_ROOT, type=Map)["g/f"] = 1
    ours.apply_update(hostile.encode_update(ours.state_vector()))
    assert ours.counter_value("g/c") == 0  # the junk entry is ignored
    assert ours.flag_get("g/f") is None
    ours.counter_add("g/c", 2)  # from 0: the junk is overwritten, not added to
    assert ours.counter_value("g/c") == 2
    assert ours.snapshot()["counters"] == {"g/c": 2}
    assert ours.snapshot()["flags"] == {}


def test_concurrent_counter_adds_all_count() -> None:
    a, b = SwarmDocument("edge-a"), SwarmDocument("edge-b")
    a.counter_add("g/c", 3)
    b.counter_add("g/c", 4)
    b.counter_add("g/c", -10)
    exchange(a, b)
    assert a.counter_value("g/c") == b.counter_value("g/c") == -3


def test_batch_coalesces_counter_adds() -> None:
    doc = SwarmDocument("edge-0")
    batcher = UpdateBatcher(doc)
    with doc.batch():
        for _ in range(1000):
            doc.counter_add("g/ticks", 1)
        assert doc.counter_value("g/ticks") == 1000
    update = batcher.flush()
    assert update is not None
    assert len(update) < 200
    other = SwarmDocument("gw")
    other.apply_update(update)
    assert other.counter_value("g/ticks") == 1000


def test_counter_value_inside_a_batch_counts_pending_adds_of_both_signs() -> None:
    doc = SwarmDocument("edge-0")
    doc.counter_add("g/c", 10)  # written before the batch
    other = SwarmDocument("edge-1")
    other.counter_add("g/c", -4)
    doc.apply_update(other.encode_update())
    with doc.batch():
        doc.counter_add("g/c", 5)
        assert doc.counter_value("g/c") == 11
        doc.counter_add("g/c", -7)
        doc.counter_add("g/c", -1)
        assert doc.counter_value("g/c") == 3  # 10 - 4 + 5 - 7 - 1
        with doc.batch():  # nested: still pending until the outermost batch ends
            doc.counter_add("g/c", -3)
            assert doc.counter_value("g/c") == 0
        assert doc.counter_value("g/other") == 0  # pending adds of g/c only count for g/c
    assert doc.counter_value("g/c") == 0
    fresh = SwarmDocument("gw")
    fresh.apply_update(doc.encode_update())
    assert fresh.counter_value("g/c") == 0


def test_set_add_remove_and_readd() -> None:
    doc = SwarmDocument("edge-0")
    doc.set_add("g/seen", "r1")
    doc.set_add("g/seen", "r1")
    doc.set_add("g/seen", "r2")
    doc.set_remove("g/seen", "r1")
    assert doc.set_items("g/seen") == {"r2"}
    doc.set_add("g/seen", "r1")
    assert doc.set_items("g/seen") == {"r1", "r2"}
    doc.set_remove("g/seen", "missing")
    assert doc.snapshot()["sets"] == {"g/seen": ["r1", "r2"]}


def test_adding_a_member_one_added_already_says_nothing() -> None:
    doc = SwarmDocument("edge-0")
    batcher = UpdateBatcher(doc)
    doc.set_add("g/s", "x")
    assert batcher.flush() is not None
    doc.set_add("g/s", "x")  # our own add of it is live: no write, no update
    assert batcher.flush() is None
    doc.set_remove("g/s", "x")
    doc.set_add("g/s", "x")  # removed since: a new add
    assert batcher.flush() is not None
    assert doc.set_items("g/s") == {"x"}


def test_a_remove_made_here_reaches_a_fresh_replica() -> None:
    doc = SwarmDocument("edge-0")
    doc.set_add("g/s", "x")
    doc.set_add("g/s", "y")
    doc.set_remove("g/s", "x")  # straight after the add, from what this document holds
    replica = SwarmDocument("gw")
    replica.apply_update(doc.encode_update())
    assert replica.set_items("g/s") == doc.set_items("g/s") == {"y"}


def test_adding_an_item_someone_else_added_is_an_add_of_ones_own() -> None:
    a, b = SwarmDocument("edge-a"), SwarmDocument("edge-b")
    a.set_add("g/s", "x")
    exchange(a, b)
    b.set_add("g/s", "x")  # already a member (a's add): b's own add still counts
    c = SwarmDocument("edge-c")
    c.apply_update(a.encode_update())  # c saw a's add only
    c.set_remove("g/s", "x")  # ...so its remove cannot hide b's add
    exchange(a, b, c)
    assert a.set_items("g/s") == b.set_items("g/s") == c.set_items("g/s") == {"x"}


def test_concurrent_add_wins_over_remove_that_did_not_see_it() -> None:
    a, b = SwarmDocument("edge-a"), SwarmDocument("edge-b")
    a.set_add("g/s", "x")
    exchange(a, b)
    b.set_remove("g/s", "x")  # saw a's add only
    a.set_add("g/s", "x")  # no-op: a's own add is still live locally
    c = SwarmDocument("edge-c")
    c.set_add("g/s", "x")  # concurrent, unseen by b
    exchange(a, b, c)
    assert a.set_items("g/s") == b.set_items("g/s") == c.set_items("g/s") == {"x"}
    # Removing after seeing every add removes it everywhere.
    b.set_remove("g/s", "x")
    exchange(a, b, c)
    assert a.set_items("g/s") == b.set_items("g/s") == c.set_items("g/s") == set()


def test_stale_redelivery_does_not_undo_remove() -> None:
    a, b = SwarmDocument("edge-a"), SwarmDocument("gw")
    a.set_add("g/s", "x")
    stale = a.encode_update()
    b.apply_update(stale)
    b.set_remove("g/s", "x")
    a.apply_update(b.encode_update(a.state_vector()))
    assert a.set_items("g/s") == frozenset()
    for doc in (a, b):
        doc.apply_update(stale)
        doc.apply_update(stale)
        assert doc.set_items("g/s") == frozenset()


def test_flags_lww_and_tie_break_by_client_id() -> None:
    a, b = SwarmDocument("edge-a"), SwarmDocument("edge-b")
    assert a.flag_get("g/f") is None
    a.flag_set("g/f", True)
    b.flag_set("g/f", False)  # concurrent
    exchange(a, b)
    winner = a if a.client_id > b.client_id else b
    expected = winner is a
    assert a.flag_get("g/f") is expected
    assert b.flag_get("g/f") is expected
    # A write that has seen the other one wins regardless of client id.
    loser = b if winner is a else a
    loser.flag_set("g/f", not expected)
    exchange(a, b)
    assert a.flag_get("g/f") is (not expected)
    assert b.flag_get("g/f") is (not expected)


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.counter_add("nogroup", 1),
        lambda d: d.counter_add("g/ok", 1.5),
        lambda d: d.counter_add("g/ok", True),
        lambda d: d.set_add("g/ok", ""),
        lambda d: d.set_add("bad key/x", "a"),
        lambda d: d.flag_set("g/ok", 1),
        lambda d: d.flag_get(""),
    ],
)
def test_invalid_input_is_refused(call) -> None:
    doc = SwarmDocument("edge-0")
    before = doc.state_vector()
    with pytest.raises(InvalidKey) as info:
        call(doc)
    assert info.value.error_code == 110
    assert doc.state_vector() == before


def test_client_id_is_stable_and_per_incarnation() -> None:
    assert client_id_for("edge-1") == client_id_for("edge-1", 0)
    assert client_id_for("edge-1", 1) != client_id_for("edge-1", 0)
    assert 0 <= client_id_for("edge-1") < 2**53
    assert SwarmDocument("edge-1").client_id == client_id_for("edge-1")


def _populated() -> SwarmDocument:
    doc = SwarmDocument("gw")
    other = SwarmDocument("edge-9")
    other.counter_add("g/a", 7)
    other.set_add("g/s", "x")
    other.flag_set("g/f", True)
    doc.apply_update(other.encode_update())
    doc.counter_add("g/a", 1)
    return doc


def test_malformed_update_refused_document_untouched() -> None:
    doc = _populated()
    edge = SwarmDocument("edge-1")
    edge.counter_add("g/a", 100)
    edge.set_add("g/s", "y")
    good = edge.encode_update()
    before_state, before_snapshot = doc.state_vector(), doc.snapshot()
    candidates = [b"", b"\x00\x01", b"\xff" * 40, good[:-1], good[: len(good) // 2]]
    candidates += [good[:cut] for cut in range(1, len(good), 3)]
    refused = 0
    for bad in candidates:
        try:
            doc.apply_update(bad)
        except MalformedUpdate:
            refused += 1
        assert doc.state_vector() == before_state
        assert doc.snapshot() == before_snapshot
    assert refused >= 5
    assert MalformedUpdate.error_code == 101
    doc.apply_update(good)  # still usable afterwards
    assert doc.counter_value("g/a") == 108


def test_non_bytes_update_refused() -> None:
    with pytest.raises(MalformedUpdate):
        SwarmDocument("gw").apply_update("text")  # type: ignore[arg-type]


def _refused(doc: SwarmDocument, update: bytes) -> bool:
    """Whether ``doc`` refused ``update`` with MalformedUpdate (any other error propagates)."""
    try:
        doc.apply_update(update)
    except MalformedUpdate:
        return True
    return False


def _yrs_refuses(update: bytes) -> bool:
    """The oracle: whether a bare pycrdt document refuses ``update``."""
    try:
        Doc().apply_update(update)
    except ValueError:
        return True
    return False


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_never_half_applies(garbage: bytes) -> None:
    doc = _populated()
    before_state, before = doc.state_vector(), doc.snapshot()
    refused = _refused(doc, garbage)
    # Refused exactly when Yrs itself cannot decode the bytes: nothing is let through.
    assert refused == _yrs_refuses(garbage)
    if refused:
        assert doc.state_vector() == before_state
        assert doc.snapshot() == before


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_bit_flips_refused_or_harmless(data: st.DataObject) -> None:
    doc = _populated()
    edge = SwarmDocument("edge-1")
    edge.counter_add("g/a", 3)
    good = bytearray(edge.encode_update())
    index = data.draw(st.integers(0, len(good) - 1))
    good[index] ^= data.draw(st.integers(1, 255))
    before_state, before = doc.state_vector(), doc.snapshot()
    refused = _refused(doc, bytes(good))
    assert refused == _yrs_refuses(bytes(good))
    if refused:
        assert doc.state_vector() == before_state
        assert doc.snapshot() == before
    doc.snapshot()  # reading never fails


def test_batcher_one_update_per_flush() -> None:
    doc = SwarmDocument("edge-0")
    batcher = UpdateBatcher(doc, interval_s=0.5)
    assert batcher.flush() is None
    for index in range(64):
        doc.counter_add(f"g/c{index % 8}", 1)
        doc.set_add("g/s", f"r{index}")
    doc.flag_set("g/f", True)
    assert batcher.pending
    update = batcher.flush()
    assert update is not None
    assert batcher.flush() is None
    assert batcher.flushes == 1
    gateway = SwarmDocument("gw")
    gateway.apply_update(update)
    assert gateway.snapshot() == doc.snapshot()
    # The next flush carries only what came after.
    doc.counter_add("g/c0", 1)
    second = batcher.flush()
    assert second is not None
    assert len(second) < len(update)
    gateway.apply_update(second)
    assert gateway.snapshot() == doc.snapshot()


def test_batcher_poll_waits_for_interval() -> None:
    doc = SwarmDocument("edge-0")
    batcher = UpdateBatcher(doc, interval_s=1.0)
    assert batcher.get_timer() is None
    doc.counter_add("g/c", 1)
    assert batcher.poll(10.0) is not None
    doc.counter_add("g/c", 1)
    assert batcher.get_timer() == 11.0
    assert batcher.poll(10.5) is None
    assert batcher.poll(11.0) is not None


def test_batcher_excludes_remote_writes() -> None:
    edge, other = SwarmDocument("edge-0"), SwarmDocument("edge-1")
    batcher = UpdateBatcher(edge)
    for index in range(50):
        other.set_add("g/s", f"remote-{index}")
    edge.apply_update(other.encode_update())
    edge.counter_add("g/c", 1)
    update = batcher.flush()
    assert update is not None
    fresh = SwarmDocument("gw")
    fresh.apply_update(update)
    assert fresh.snapshot() == {"counters": {"g/c": 1}, "sets": {}, "flags": {}}


# -- convergence properties -------------------------------------------------------------------

op_strategy = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(COUNTER_KEYS), st.integers(-5, 5).filter(bool)),
    st.tuples(st.just("sadd"), st.sampled_from(SET_KEYS), st.sampled_from(ITEMS)),
    st.tuples(st.just("srem"), st.sampled_from(SET_KEYS), st.sampled_from(ITEMS)),
    st.tuples(st.just("flag"), st.sampled_from(FLAG_KEYS), st.booleans()),
)
# (writer index, op, sync-after?) ; a sync delivers the writer's doc to a random other writer
step_strategy = st.tuples(st.integers(0, len(WRITERS) - 1), op_strategy, st.integers(-1, 3))


def _apply(doc: SwarmDocument, op: tuple[str, str, object]) -> None:
    kind, key, arg = op
    if kind == "add":
        assert isinstance(arg, int)
        doc.counter_add(key, arg)
    elif kind == "sadd":
        assert isinstance(arg, str)
        doc.set_add(key, arg)
    elif kind == "srem":
        assert isinstance(arg, str)
        doc.set_remove(key, arg)
    else:
        assert isinstance(arg, bool)
        doc.flag_set(key, arg)


@settings(max_examples=120, deadline=None)
@given(steps=st.lists(step_strategy, max_size=40), seed=st.integers(0, 2**32 - 1))
def test_replicas_converge_under_reorder_duplication_and_loss(steps, seed) -> None:
    rng = random.Random(seed)
    docs = [SwarmDocument(writer) for writer in WRITERS]
    batchers = [UpdateBatcher(doc) for doc in docs]
    sent: list[bytes] = []
    expected_counters = dict.fromkeys(COUNTER_KEYS, 0)
    for writer, op, gossip in steps:
        _apply(docs[writer], op)
        if op[0] == "add":
            expected_counters[op[1]] += int(op[2])
        update = batchers[writer].flush()
        if update is not None:
            sent.append(update)
        if gossip >= 0 and gossip != writer:
            # Partial gossip mid-run: some updates arrive early, in any order.
            for stale in rng.sample(sent, k=min(len(sent), 3)):
                docs[gossip].apply_update(stale)
    # Every replica receives a shuffled, duplicated, lossy stream of the updates...
    for doc in docs:
        stream = [u for u in sent if rng.random() > 0.3] * 2
        rng.shuffle(stream)
        for update in stream:
            doc.apply_update(update)
    # ...then heals by state-vector sync, pairwise, both ways.
    exchange(*docs)
    snapshots = [doc.snapshot() for doc in docs]
    assert all(snapshot == snapshots[0] for snapshot in snapshots)
    for key in COUNTER_KEYS:
        assert docs[0].counter_value(key) == expected_counters[key]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(["add", "rem"]), st.sampled_from(ITEMS)),
        max_size=30,
    )
)
def test_or_set_matches_sequential_semantics_when_synced(ops) -> None:
    """Fully synced after every op, the OR-set behaves as a plain set."""
    docs = [SwarmDocument(f"edge-{index}") for index in range(3)]
    model: set[str] = set()
    for writer, kind, item in ops:
        if kind == "add":
            docs[writer].set_add("g/s", item)
            model.add(item)
        else:
            docs[writer].set_remove("g/s", item)
            model.discard(item)
        exchange(*docs)
        for doc in docs:
            assert doc.set_items("g/s") == model


@settings(max_examples=100, deadline=None)
@given(
    st.sets(st.sampled_from(ITEMS)),
    st.sets(st.sampled_from(ITEMS)),
    st.sets(st.sampled_from(ITEMS)),
)
def test_or_set_concurrent_add_wins(initial, removed, concurrently_added) -> None:
    """Removes hide only the adds they saw; concurrent adds survive."""
    a, b = SwarmDocument("edge-a"), SwarmDocument("edge-b")
    for item in initial:
        a.set_add("g/s", item)
    exchange(a, b)
    for item in removed:
        b.set_remove("g/s", item)
    c = SwarmDocument("edge-c")
    for item in concurrently_added:
        c.set_add("g/s", item)
    exchange(a, b, c)
    expected = (initial - removed) | concurrently_added
    assert a.set_items("g/s") == b.set_items("g/s") == c.set_items("g/s") == expected
