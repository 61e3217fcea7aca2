"""``--cpus``: the daemons run on the CPUs they are given only (cli/cpus.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from edgeswarm.cpus import format_cpu_list, parse_cpu_list

from .conftest import edgeswarm_command
from .operator import cli, error_line, json_logs


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", {0}), ("1,3", {1, 3}), ("0-3,6", {0, 1, 2, 3, 6}), ("2-2", {2}), (" 4 , 5", {4, 5})],
)
def test_cpu_lists_read_as_taskset_reads_them(text: str, cpus: set[int]) -> None:
    assert parse_cpu_list(text) == cpus
    assert parse_cpu_list(format_cpu_list(set(cpus))) == cpus


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "'' is not a CPU number or range"),
        ("a", "'a' is not a CPU number or range"),
        ("1,,2", "'' is not a CPU number or range"),
        ("-1", "'-1' is not a CPU number or range"),
        ("1-", "'1-' is not a CPU number or range"),
        ("3-1", "range '3-1' runs backwards"),
    ],
)
def test_a_malformed_cpu_list_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_cpu_list(text)


def test_cpu_lists_are_written_as_the_kernel_writes_them() -> None:
    assert format_cpu_list({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert format_cpu_list({3}) == "3"


@pytest.mark.parametrize(
    "command",
    [["gateway"], ["edge", "--edge-id", "e1", "--ca", "ca.pem"], ["infer", "--model", "m.onnx"]],
)
def test_a_wrong_cpu_list_is_a_usage_error_of_one_line(command: list[str], tmp_path: Path) -> None:
    """Checked first: before anything else of the command line is."""
    malformed = cli(*command, "--cpus", "0-x", "--data-dir", str(tmp_path))
    assert malformed.returncode == 2
    assert "--cpus 0-x: '0-x' is not a CPU number or range" in error_line(malformed)
    absent = cli(*command, "--cpus", "4095", "--data-dir", str(tmp_path))
    assert absent.returncode == 2
    usable = format_cpu_list(os.sched_getaffinity(0))
    assert f"CPU 4095 is not available to this process; choose from {usable}" in error_line(absent)


def _allowed(pid: int) -> dict[int, str]:
    """Thread id -> its ``Cpus_allowed_list``."""
    allowed = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        [line] = [x for x in status.splitlines() if x.startswith("Cpus_allowed_list:")]
        allowed[int(tid)] = line.split(":", 1)[1].strip()
    return allowed


def test_a_pinned_gateway_runs_every_thread_on_its_cpus(tmp_path: Path) -> None:
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        pytest.skip("pinning is only seen on a machine with 2 CPUs or more")
    last = str(usable[-1])
    process = subprocess.Popen(
        edgeswarm_command(
            *("gateway", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path)),
            *("--metrics-port", "-1", "--cpus", last),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert '"listening"' in process.stdout.readline()
        threads = _allowed(process.pid)
        assert len(threads) > 2  # the log writer, the checkpointer, ... started after pinning
        assert set(threads.values()) == {last}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    [pinned] = [r for r in json_logs(stderr) if r["message"] == "pinned to CPUs"]
    assert pinned["cpus"] == last
