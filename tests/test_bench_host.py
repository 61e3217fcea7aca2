"""The machine's CPU times around a benchmark run (``edgeswarm.bench.host``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeswarm.bench.host import CpuTimes, host_line, parse_cpu_times, sample_cpu_times

STAT = """cpu  4892716 1956 764616 10917100 38311 0 27420 117153 0 0
cpu0 2446358 978 382308 5458550 19155 0 13710 58576 0 0
intr 1 2 3
"""


def test_the_aggregate_line_is_split_into_busy_idle_and_stolen() -> None:
    times = parse_cpu_times(STAT)
    assert times == CpuTimes(
        busy=4892716 + 1956 + 764616 + 0 + 27420, idle=10917100 + 38311, steal=117153
    )
    assert times.total == times.busy + times.idle + times.steal


def test_a_kernel_without_a_steal_column_counts_none_stolen() -> None:
    assert parse_cpu_times("cpu 10 0 5 100 1 0 2\n").steal == 0


def test_a_text_without_the_aggregate_line_is_refused() -> None:
    with pytest.raises(ValueError, match="no aggregate 'cpu' line"):
        parse_cpu_times("cpu0 1 2 3 4\nintr 5\n")


def test_the_line_gives_each_share_of_the_cpu_time_in_the_run() -> None:
    before = CpuTimes(busy=1000, idle=1000, steal=100)
    after = CpuTimes(busy=1600, idle=1300, steal=200)  # 600 + 300 + 100 ticks
    line = host_line(before, after, 5.2)
    assert "(5 s," in line
    assert "busy 60%" in line
    assert "idle 30%" in line
    assert "stolen by the hypervisor 10.0% of the CPU time" in line


def test_sampling_reads_the_file_and_is_none_without_one(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(STAT)
    assert sample_cpu_times(stat) == parse_cpu_times(STAT)
    assert sample_cpu_times(tmp_path / "missing") is None
    stat.write_text("garbage\n")
    assert sample_cpu_times(stat) is None
