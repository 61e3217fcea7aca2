"""CPU lists and pinning a whole process to CPUs, as ``taskset -c`` does.

The list is the kernel's (``taskset -c``, cpuset): CPU numbers and ranges
separated by commas, ``0``, ``1,3``, ``0-3,6``. Pinning sets every thread of
the process (Linux: each entry of ``/proc/self/task``); threads started later
inherit it from the thread that starts them.

The daemons' ``--cpus`` (``cli/cpus.py``) and the benchmarks that give their
processes CPUs of their own (``bench/cpus.py``) both use it.
"""

from __future__ import annotations

import os

__all__ = [
    "cpu_affinity",
    "format_cpu_list",
    "parse_cpu_list",
    "pin_threads",
    "restore_threads",
]


def parse_cpu_list(text: str) -> frozenset[int]:
    """The CPUs of a list such as ``0,2-3``; raises ValueError naming what is wrong."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdecimal() or (dash and not last.isdecimal()):
            raise ValueError(f"{part.strip()!r} is not a CPU number or range")
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise ValueError(f"range {part.strip()!r} runs backwards")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: frozenset[int] | set[int]) -> str:
    """``cpus`` written as the kernel writes a list (``0-2,5``)."""
    ranges: list[tuple[int, int]] = []
    for cpu in sorted(cpus):
        if ranges and ranges[-1][1] == cpu - 1:
            ranges[-1] = (ranges[-1][0], cpu)
        else:
            ranges.append((cpu, cpu))
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def cpu_affinity() -> frozenset[int]:
    """The CPUs this thread may run on (empty where the platform cannot say)."""
    if not hasattr(os, "sched_getaffinity"):
        return frozenset()
    return frozenset(os.sched_getaffinity(0))


def pin_threads(cpus: frozenset[int]) -> dict[int, frozenset[int]]:
    """Every thread of this process on ``cpus``; what each thread had before (for
    :func:`restore_threads`). Raises OSError (EINVAL) for CPUs it may not use."""
    before: dict[int, frozenset[int]] = {}
    for thread in _threads():
        try:
            before[thread] = frozenset(os.sched_getaffinity(thread))
            os.sched_setaffinity(thread, cpus)
        except ProcessLookupError:  # the thread ended meanwhile
            continue
    return before


def restore_threads(before: dict[int, frozenset[int]]) -> None:
    """Give the threads pinned by :func:`pin_threads` back the CPUs they had."""
    for thread, cpus in before.items():
        try:
            os.sched_setaffinity(thread, cpus)
        except ProcessLookupError:
            continue


def _threads() -> list[int]:
    """The thread ids of this process (Linux: /proc/self/task; elsewhere the caller's)."""
    try:
        return [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        return [0]
