"""CPUs of their own for a suite's processes, as on the machines they stand for.

On one machine, Linux wakes a process receiving over loopback on the sender's
CPU, where it waits for the sender's burst to end even with another CPU idle
(``cli/cpus.py``; ``docs/benchmarks.md``, "Two processes on one machine"). A
suite whose processes stand for different machines (an edge, its gateway, an
inference node) splits the CPUs this process may use in two halves and gives
them out with the daemons' ``--cpus``, and to its own threads with
:func:`running_on`. Each suite names a variable that, set to ``0``, leaves
every process unpinned; with fewer than 2 CPUs nothing is pinned.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from edgeswarm.cpus import cpu_affinity, format_cpu_list, pin_threads, restore_threads

__all__ = ["cpu_halves", "cpus_option", "running_on"]


def cpu_halves(env: str) -> tuple[frozenset[int], frozenset[int]] | None:
    """The first half of the CPUs this process may use and the rest; None when there
    are fewer than 2 or the variable ``env`` is ``0``."""
    usable = sorted(cpu_affinity())
    if len(usable) < 2 or os.environ.get(env) == "0":
        return None
    half = (len(usable) + 1) // 2
    return frozenset(usable[:half]), frozenset(usable[half:])


def cpus_option(cpus: frozenset[int] | None) -> list[str]:
    """A daemon's ``--cpus`` option for ``cpus`` (none for None)."""
    return [] if cpus is None else ["--cpus", format_cpu_list(cpus)]


@contextlib.contextmanager
def running_on(cpus: frozenset[int] | None) -> Iterator[None]:
    """Every thread of this process on ``cpus`` inside the block (None: unchanged), then
    on the CPUs each had before (threads started inside keep ``cpus``). Start the
    daemons first: they inherit this process's CPUs, and their ``--cpus`` must be among
    them."""
    if cpus is None:
        yield
        return
    before = pin_threads(cpus)
    try:
        yield
    finally:
        restore_threads(before)
