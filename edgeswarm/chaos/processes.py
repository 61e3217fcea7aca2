"""Real gateway and edge processes for the chaos scenarios, and what their files say.

Every wait here is bounded in time (one that runs out raises AssertionError, which fails
the scenario with its message); every process started here is stopped by the
scenario that started it (:func:`stop`), killed with SIGKILL when SIGTERM is not enough.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.admin import fetch_state, fetch_status, placement_request
from edgeswarm.gateway.peers import PeerRegistry
from edgeswarm.identity import KeyPair
from edgeswarm.transport.quic import default_stack
from edgeswarm.wire import Role

ADMIN_ID = "chaos-admin"
STARTUP_TIMEOUT_S = 30.0
EDGE_ID = "chaos-edge"


def edgeswarm_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgeswarm", *args]


@dataclass
class GatewayProcess:
    """A gateway process on loopback."""

    process: subprocess.Popen[str]
    port: int
    ca: Path
    data_dir: Path
    admin_key: KeyPair

    def edge_token(self, uses: int = 1) -> str:
        with PeerRegistry(self.data_dir / "peers.db") as registry:
            return registry.issue_token(Role.EDGE, ttl_s=600, uses=uses)

    def state(self, timeout: float = 10.0) -> dict[str, Any]:
        """The swarm state (CRDT counters, sets, flags) as this gateway holds it."""
        address = GatewayAddress(port=self.port, ca_file=self.ca, stack=default_stack())
        _, snapshot = asyncio.run(
            fetch_state(address, key=self.admin_key, admin_id=ADMIN_ID, timeout=timeout)
        )
        return dict(snapshot)

    def placement(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """One placement operation (``agents.add``, ``agents.list``, ``edges.list``...)."""
        address = GatewayAddress(port=self.port, ca_file=self.ca, stack=default_stack())
        reply = asyncio.run(
            placement_request(address, op, args, key=self.admin_key, admin_id=ADMIN_ID)
        )
        if not reply.ok:
            raise AssertionError(f"placement {op}: {reply.message}")
        return dict(reply.result)

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        address = GatewayAddress(port=self.port, ca_file=self.ca, stack=default_stack())
        return asyncio.run(
            fetch_status(address, key=self.admin_key, admin_id=ADMIN_ID, timeout=timeout)
        )


def start_gateway(
    data_dir: Path, *extra: str, port: int = 0, log: Path | None = None
) -> GatewayProcess:
    """A gateway on 127.0.0.1 (``port`` 0 picks one); stderr goes to ``log``
    (data_dir/gateway.log)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = log or data_dir / "gateway.log"
    admin_key = KeyPair.generate()
    with PeerRegistry(data_dir / "peers.db") as registry:
        registry.add_peer(admin_key.public_key, ADMIN_ID, Role.ADMIN, replace=True)
    with log.open("a") as stderr:
        process = subprocess.Popen(
            edgeswarm_command(
                "gateway", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir),
                "--metrics-port", "-1", *extra,
            ),
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip
    assert process.stdout is not None
    ready = _read_line(process.stdout, STARTUP_TIMEOUT_S)
    if not ready:
        stop(process)
        raise AssertionError(f"gateway did not start: {tail(log)}")
    info = json.loads(ready)
    return GatewayProcess(process, int(info["port"]), Path(info["ca"]), data_dir, admin_key)


def _read_line(stream: IO[str], timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


def start_edge(
    gateway: str,
    ca: Path,
    token: str,
    data_dir: Path,
    *args: str,
    edge_id: str = EDGE_ID,
    log: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """An edge stepping the simulator and streaming to ``gateway`` (host:port); JSON
    progress lines on stdout every 0.2 s, its log in ``log`` (data_dir/edge.log);
    ``env``: variables added to this process's environment."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (log or data_dir / "edge.log").open("a") as stderr:
        return subprocess.Popen(
            edgeswarm_command(
                "edge", "--edge-id", edge_id, "--ca", str(ca), "--gateway", gateway,
                "--data-dir", str(data_dir), "--join-token", token, "--metrics-port", "-1",
                "--progress-interval", "0.2", "--batch-agents", "500", "--json", *args,
            ),
            stdout=subprocess.PIPE, stderr=stderr, text=True,
            env={**os.environ, **env} if env else None,
        )  # fmt: skip


def stop(process: subprocess.Popen[str], timeout: float = 15.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; closes its pipes. Returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    if process.stdout is not None:
        process.stdout.close()
    return process.returncode


def kill9(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


class ProgressLines:
    """An edge's stdout JSON lines, read on a thread so every read has a timeout; each
    line gets ``at`` (monotonic seconds when it was read) for throughput figures."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        args = [str(arg) for arg in process.args] if isinstance(process.args, list) else []
        self.log = Path(args[args.index("--data-dir") + 1]) / "edge.log" if args else None
        """Where the edge logs (its data directory's edge.log): quoted when it ends early."""
        self.seen: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(process.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                if line.startswith("{"):
                    record = json.loads(line)
                    record["at"] = time.monotonic()
                    self._queue.put(record)
        except ValueError:  # the pipe was closed under us by stop()
            pass
        self._queue.put(None)

    def next(self, timeout: float = 30.0) -> dict[str, Any]:
        try:
            record = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no progress line from the edge in {timeout} s") from None
        if record is None:
            said = tail(self.log, 400) if self.log else ""
            raise AssertionError(f"the edge ended before the scenario was done: {said}")
        self.seen.append(record)
        return record

    def until(self, done: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.next(max(0.1, deadline - time.monotonic()))):
            if time.monotonic() > deadline:
                raise AssertionError(f"edge progress did not reach the condition in {timeout} s")

    def for_seconds(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        self.until(lambda line: line["at"] >= end, timeout=seconds + 30)

    def steady(self, seconds: float = 1.0) -> float:
        """Wait for the first acknowledgement, then stream ``seconds`` more: the window
        before a fault. Returns when it began (monotonic)."""
        self.until(lambda line: line["observations_acked"] > 0)
        began = time.monotonic()
        self.for_seconds(seconds)
        return began

    def rest(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                record = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the edge did not finish in {timeout} s") from None
            if record is None:
                return self.seen
            self.seen.append(record)


def logged_batches(data_dir: Path, edge_id: str = EDGE_ID) -> list[tuple[int, int]]:
    """(seq, observations) of every batch in the gateway's durable log for ``edge_id``."""
    path = data_dir / "observations.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute(
            "SELECT seq, count FROM batches WHERE edge_id = ? ORDER BY seq", (edge_id,)
        ).fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()
    return [(int(seq), int(count)) for seq, count in rows]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout} s")
        time.sleep(0.05)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text()[-chars:]
    except OSError:
        return ""


def is_root() -> bool:
    return os.geteuid() == 0
