"""Fixtures shared by the test suite: real gateway processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

STARTUP_TIMEOUT_S = 30


@dataclass
class RunningGateway:
    """A gateway process started for a test."""

    process: subprocess.Popen[str]
    port: int
    ca: Path
    metrics_port: int
    data_dir: Path
    log: Path


def edgeswarm_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgeswarm", *args]


def start_gateway(data_dir: Path, *extra: str) -> RunningGateway:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "gateway.log"
    with log.open("a") as stderr:
        process = subprocess.Popen(
            edgeswarm_command(
                "gateway",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(data_dir),
                "--metrics-port",
                "0",
                *extra,
            ),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(STARTUP_TIMEOUT_S)
        raise AssertionError(f"gateway did not start: {log.read_text()}")
    info = json.loads(line)
    return RunningGateway(
        process=process,
        port=int(info["port"]),
        ca=Path(info["ca"]),
        metrics_port=int(info["metrics_port"]),
        data_dir=data_dir,
        log=log,
    )


def stop_process(process: subprocess.Popen[str], timeout: float = 15) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path / "gateway")
    try:
        yield running
    finally:
        stop_process(running.process)
        if running.process.stdout is not None:
            running.process.stdout.close()


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours *_proxy variables; tests only talk to 127.0.0.1.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("http_proxy", "HTTP_PROXY"):
        if name in os.environ:
            monkeypatch.delenv(name)
