"""``--cpus``: a daemon runs on the CPUs it is given only, as ``taskset -c`` would run it.

Why a daemon wants it: on one machine, a process sending over loopback wakes
the receiving process on its own CPU (Linux treats a socket's wake-up as
synchronous: the waker is expected to sleep soon), so the receiver waits for
the sender's burst to end even with another CPU idle. On the 2-core machines
here a receiver woke 2 to 3 ms after a sender's burst began, 0.13 ms with the
two on CPUs of their own; an edge sending a 10 Hz tick's batches to a gateway
on the same box had its acknowledgements twice as late (``docs/benchmarks.md``,
``swarm_10hz``). An edge and a gateway sharing an IoT box each get their own
cores, as Kubernetes' static CPU manager gives a Guaranteed pod.

The list is the kernel's (``taskset -c``, cpuset): CPU numbers and ranges
separated by commas, ``0``, ``1,3``, ``0-3,6``. Every thread of the process is
pinned, those started later too (they inherit it): ``edgeswarm.cpus``.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from ..cpus import cpu_affinity, format_cpu_list, parse_cpu_list, pin_threads
from .exits import Usage

__all__ = ["Cpus", "pin_to_cpus"]

logger = logging.getLogger("edgeswarm.cli")

Cpus = Annotated[
    str | None,
    typer.Option(
        "--cpus",
        metavar="LIST",
        help="Run on these CPUs only, listed as taskset -c lists them (0,2-3); default: all.",
    ),
]
"""``--cpus`` of the long-running commands."""


def pin_to_cpus(text: str | None, option: str = "--cpus") -> frozenset[int] | None:
    """Pin every thread of this process to the CPUs of ``text`` (None: leave it alone);
    the CPUs. Raises :class:`Usage` for a malformed list or CPUs this process may not use."""
    if text is None:
        return None
    if not hasattr(os, "sched_setaffinity"):
        raise Usage(f"{option}: this platform cannot pin a process to CPUs; leave {option} out")
    try:
        cpus = parse_cpu_list(text)
    except ValueError as exc:
        raise Usage(f"{option} {text}: {exc}; list CPUs as in 0,2-3") from None
    allowed = cpu_affinity()
    if not cpus <= allowed:
        raise Usage(
            f"{option}: CPU {format_cpu_list(cpus - allowed)} is not available to this process;"
            f" choose from {format_cpu_list(allowed)}"
        )
    pin_threads(cpus)
    logger.info("pinned to CPUs", extra={"cpus": format_cpu_list(cpus)})
    return cpus
