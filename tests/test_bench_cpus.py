"""The benchmarks' processes on CPUs of their own (bench/cpus.py, edgeswarm/cpus.py)."""

from __future__ import annotations

import os
import threading

import pytest

from edgeswarm.bench.cpus import cpu_halves, cpus_option, running_on
from edgeswarm.cpus import parse_cpu_list

ENV = "EDGESWARM_TEST_BENCH_CPUS"


def _usable() -> list[int]:
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        pytest.skip("the CPUs are only split on a machine with 2 CPUs or more")
    return usable


def test_the_cpus_split_in_two_halves_and_a_variable_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usable = _usable()
    monkeypatch.delenv(ENV, raising=False)
    halves = cpu_halves(ENV)
    assert halves is not None
    first, second = halves
    assert first
    assert second
    assert sorted(first | second) == usable
    assert max(first) < min(second)
    option, listed = cpus_option(second)
    assert option == "--cpus"
    assert parse_cpu_list(listed) == second  # as the kernel writes it: 1, or 2-3
    monkeypatch.setenv(ENV, "0")
    assert cpu_halves(ENV) is None
    assert cpus_option(None) == []


def test_running_on_pins_every_thread_and_gives_their_cpus_back() -> None:
    usable = _usable()
    before = os.sched_getaffinity(0)
    release = threading.Event()
    seen: list[set[int]] = []
    other = threading.Thread(target=lambda: release.wait(10), daemon=True)
    other.start()
    assert other.native_id is not None
    try:
        with running_on(frozenset({usable[-1]})):
            seen = [os.sched_getaffinity(0), os.sched_getaffinity(other.native_id)]
        after = [os.sched_getaffinity(0), os.sched_getaffinity(other.native_id)]
    finally:
        release.set()
        other.join(10)
    assert seen == [{usable[-1]}, {usable[-1]}]
    assert after == [before, before]


def test_running_on_nothing_changes_nothing() -> None:
    before = os.sched_getaffinity(0)
    with running_on(None):
        assert os.sched_getaffinity(0) == before
