"""StateStore: snapshot + update log survive restarts, torn tails are cut, not fatal."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeswarm.state import StateStore, StoreError, SwarmDocument, UpdateBatcher


def write_some(store: StateStore, gateway: SwarmDocument, count: int, prefix: str) -> None:
    """Edges send updates; the gateway applies and logs each."""
    for index in range(count):
        edge = SwarmDocument(f"{prefix}-{index}")
        batcher = UpdateBatcher(edge)
        edge.counter_add("g/c", index + 1)
        edge.set_add("g/s", f"{prefix}-{index}")
        edge.flag_set("g/f", index % 2 == 0)
        update = batcher.flush()
        assert update is not None
        gateway.apply_update(update)
        store.append(update)


def reload(directory: Path) -> tuple[SwarmDocument, StateStore]:
    store = StateStore(directory, fsync="never")
    gateway = SwarmDocument("gw")
    store.load(gateway)
    return gateway, store


def test_restart_keeps_state(tmp_path: Path) -> None:
    gateway = SwarmDocument("gw")
    with StateStore(tmp_path) as store:
        report = store.load(gateway)
        assert report.records_replayed == report.snapshot_bytes == report.dropped_bytes == 0
        write_some(store, gateway, 10, "edge")
        gateway.counter_add("g/own", 1)  # the gateway's own writes are logged too
        store.append(gateway.encode_update())
    restarted = SwarmDocument("gw")
    with StateStore(tmp_path) as store:
        report = store.load(restarted)
    assert report.records_replayed == 11
    assert report.drop_reason is None
    assert restarted.snapshot() == gateway.snapshot()
    assert restarted.counter_value("g/c") == sum(range(1, 11))


def test_compaction_then_more_log(tmp_path: Path) -> None:
    gateway = SwarmDocument("gw")
    store = StateStore(tmp_path, fsync="interval", compact_after_bytes=500)
    store.load(gateway)
    write_some(store, gateway, 10, "early")
    assert store.needs_compaction
    store.compact(gateway)
    assert not store.needs_compaction
    write_some(store, gateway, 3, "late")
    store.close()
    restarted, again = reload(tmp_path)
    report_snapshot = (tmp_path / "snapshot.bin").stat().st_size
    assert report_snapshot > 0
    assert restarted.snapshot() == gateway.snapshot()
    again.close()


def test_crash_between_snapshot_and_log_reset_is_harmless(tmp_path: Path) -> None:
    gateway = SwarmDocument("gw")
    store = StateStore(tmp_path)
    store.load(gateway)
    write_some(store, gateway, 5, "edge")
    log = (tmp_path / "updates.log").read_bytes()
    store.compact(gateway)
    store.close()
    (tmp_path / "updates.log").write_bytes(log)  # the old log survived the "crash"
    restarted, again = reload(tmp_path)
    assert restarted.snapshot() == gateway.snapshot()
    again.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(1, 400), garbage=st.binary(max_size=20))
def test_torn_tail_is_truncated_and_reported(tmp_path: Path, cut: int, garbage: bytes) -> None:
    # tmp_path is shared by every example (and hypothesis may repeat one): fresh dir each time
    directory = Path(tempfile.mkdtemp(prefix=f"torn-{cut}-", dir=tmp_path))
    gateway = SwarmDocument("gw")
    store = StateStore(directory)
    store.load(gateway)
    write_some(store, gateway, 4, "edge")
    store.close()
    log_path = directory / "updates.log"
    whole = log_path.read_bytes()
    cut = min(cut, len(whole) - 20)
    torn = whole[:-cut] + garbage
    log_path.write_bytes(torn)
    restarted = SwarmDocument("gw")
    with StateStore(directory) as again:
        report = again.load(restarted)
        assert report.records_replayed <= 4
        # garbage equal to the bytes it replaced leaves the log whole: nothing to report
        # (8 zero bytes would be a valid empty record: refused, not dropped)
        if garbage and torn != whole:
            assert report.dropped_bytes > 0 or report.records_refused > 0
        assert (report.dropped_bytes > 0) == (report.drop_reason is not None)
        # The store is usable: appends after the cut replay on the next start.
        extra = SwarmDocument("late")
        extra.counter_add("g/late", 1)
        restarted.apply_update(extra.encode_update())
        again.append(extra.encode_update())
    final = SwarmDocument("gw")
    with StateStore(directory) as third:
        report = third.load(final)
    assert report.dropped_bytes == 0
    assert final.snapshot() == restarted.snapshot()
    assert final.counter_value("g/late") == 1


def test_crc_mismatch_in_last_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gateway = SwarmDocument("gw")
    with StateStore(tmp_path) as store:
        store.load(gateway)
        write_some(store, gateway, 3, "edge")
    log_path = tmp_path / "updates.log"
    data = bytearray(log_path.read_bytes())
    data[-1] ^= 0xFF
    log_path.write_bytes(bytes(data))
    restarted = SwarmDocument("gw")
    with caplog.at_level(logging.WARNING), StateStore(tmp_path) as store:
        report = store.load(restarted)
    assert report.records_replayed == 2
    assert report.drop_reason == "crc mismatch"
    assert "dropped" in caplog.text
    assert restarted.counter_value("g/c") == 1 + 2


def test_corrupt_snapshot_raises_store_error(tmp_path: Path) -> None:
    gateway = SwarmDocument("gw")
    gateway.counter_add("g/c", 1)
    with StateStore(tmp_path) as store:
        store.load(SwarmDocument("gw"))
        store.compact(gateway)
    snapshot = tmp_path / "snapshot.bin"
    snapshot.write_bytes(snapshot.read_bytes()[:-2])
    with StateStore(tmp_path) as store, pytest.raises(StoreError) as info:
        store.load(SwarmDocument("gw"))
    assert info.value.error_code == 120
