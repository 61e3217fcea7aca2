"""Faults made with the kernel: nftables drops and partitions, tbf bandwidth caps, tmpfs
disks that fill up. Only ever used inside a network and mount namespace of the scenario's
own (see :mod:`edgeswarm.chaos.runner`), so every rule and mount dies with it.

The kernel here has no ``netem`` qdisc; delay, jitter and reordering come from the
userspace relay in :mod:`edgeswarm.chaos.relay` instead.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

TABLE = "edgeswarm_chaos"


def missing_tools(*tools: str) -> str | None:
    """Why the kernel tools a scenario needs are not here, or None."""
    absent = [tool for tool in tools if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not installed (scripts/chaos installs them as root)"
    return None


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def loopback_up() -> None:
    _run("ip", "link", "set", "lo", "up")


class Nftables:
    """One nftables table in this namespace with an output chain; rules on UDP ``port``
    (both directions on loopback: packets to it and from it)."""

    def __init__(self) -> None:
        _run("nft", "add", "table", "inet", TABLE)
        _run("nft", "add", "chain", "inet", TABLE, "out",
             "{ type filter hook output priority 0; policy accept; }")  # fmt: skip

    def drop_percent(self, port: int, percent: int) -> None:
        """Drop ``percent`` % of the UDP packets to or from ``port``, at random."""
        for direction in ("dport", "sport"):
            _run("nft", "add", "rule", "inet", TABLE, "out", "udp", direction, str(port),
                 "numgen", "random", "mod", "100", "<", str(percent), "drop")  # fmt: skip

    def partition(self, port: int) -> None:
        """Drop every UDP packet to or from ``port``."""
        for direction in ("dport", "sport"):
            _run("nft", "add", "rule", "inet", TABLE, "out", "udp", direction, str(port), "drop")

    def heal(self) -> None:
        _run("nft", "flush", "chain", "inet", TABLE, "out")

    def close(self) -> None:
        _run("nft", "delete", "table", "inet", TABLE)


def cap_loopback(rate: str) -> None:
    """Cap the bandwidth of the loopback device (token bucket filter)."""
    _run("tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", rate, "burst", "16kb",
         "limit", "256kb")  # fmt: skip


def uncap_loopback() -> None:
    _run("tc", "qdisc", "del", "dev", "lo", "root")


def mount_tmpfs(directory: Path, size_mib: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(directory))


def unmount(directory: Path) -> None:
    _run("umount", "-l", str(directory))


def fill_disk(directory: Path, leave_bytes: int = 0) -> Path:
    """Write a filler file until the file system of ``directory`` has at most
    ``leave_bytes`` free; returns the filler (delete it to give the space back)."""
    filler = directory / "chaos-filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb", buffering=0) as out:
        for _ in range(1 << 14):  # bounded: 16 GiB at most
            free = shutil.disk_usage(directory).free
            if free <= leave_bytes:
                break
            try:
                out.write(chunk[: max(4096, min(len(chunk), free - leave_bytes))])
            except OSError:  # ENOSPC: full
                break
    return filler
