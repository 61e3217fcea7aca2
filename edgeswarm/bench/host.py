"""What the machine did while a suite ran, besides the suite: CPU stolen, idle, load.

The figures of the suites are measured on small shared VMs, where the hypervisor
can give a core to another tenant for milliseconds at a time: a latency tail
(``mqtt_loop``, ``end_to_end``) rises with the time stolen, and a rate falls with
it. ``python -m edgeswarm.bench`` samples the machine's CPU times (``/proc/stat``)
before and after a suite and prints one line about the run on stderr, so a figure
can be read beside the machine it came from; nothing of it goes into ``--json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuTimes", "host_line", "parse_cpu_times", "sample_cpu_times"]

PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuTimes:
    """The machine's cumulative CPU time by state, in clock ticks (all cores)."""

    busy: int
    """user, nice, system, irq and softirq."""
    idle: int
    """idle and iowait."""
    steal: int
    """Time the hypervisor ran something else while this machine wanted a core."""

    @property
    def total(self) -> int:
        """Every state together."""
        return self.busy + self.idle + self.steal


def parse_cpu_times(stat: str) -> CpuTimes:
    """The aggregate ``cpu`` line of a ``/proc/stat`` text (proc(5)): user nice system
    idle iowait irq softirq steal [guest guest_nice]; guest time is already in user.
    Raises ``ValueError`` for a text without one."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(field) for field in fields[1:9]]
            values += [0] * (8 - len(values))  # kernels before 2.6.11 had no steal
            user, nice, system, idle, iowait, irq, softirq, steal = values
            return CpuTimes(
                busy=user + nice + system + irq + softirq, idle=idle + iowait, steal=steal
            )
    raise ValueError("no aggregate 'cpu' line in the /proc/stat text")


def sample_cpu_times(path: Path = PROC_STAT) -> CpuTimes | None:
    """The machine's CPU times now; None where there is no ``/proc/stat`` (not Linux)."""
    try:
        return parse_cpu_times(path.read_text())
    except (OSError, ValueError):
        return None


def host_line(before: CpuTimes, after: CpuTimes, seconds: float) -> str:
    """One line on the machine during a run of ``seconds``: its CPU time busy, idle and
    stolen, and the load average at the end."""
    spent = CpuTimes(
        busy=after.busy - before.busy,
        idle=after.idle - before.idle,
        steal=after.steal - before.steal,
    )
    busy, idle, steal, total = spent.busy, spent.idle, spent.steal, max(1, spent.total)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"host during the run ({seconds:.0f} s, {os.cpu_count()} CPUs): busy {busy / total:.0%},"
        f" idle {idle / total:.0%}, stolen by the hypervisor {steal / total:.1%}"
        f" of the CPU time; load average {load:.2f}"
    )
