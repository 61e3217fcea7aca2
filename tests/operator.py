"""Helpers for the tests of what an operator sees: commands run as real processes,
their one error line, JSON log lines, and HTTP probes of a daemon's metrics port."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edgeswarm.identity import load_or_create_key
from edgeswarm.wire import Role

from .conftest import RunningGateway, edgeswarm_command


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``edgeswarm ARGS`` as a process; ``env`` adds to this process's environment."""
    return subprocess.run(
        edgeswarm_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``error:`` line of a failed command; no traceback, no other plain line."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    plain = [line for line in result.stderr.splitlines() if line and not line.startswith("{")]
    assert len(plain) == 1, result.stderr[-3000:]
    assert plain[0].startswith("error: "), plain
    return plain[0]


def json_logs(text: str) -> list[dict[str, Any]]:
    """The JSON log lines of a process's stderr."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def http_get(host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of ``GET http://host:port/path`` (no proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


CLI_ADMIN_ID = "cli-admin"


def enrolled_admin(gateway: RunningGateway, directory: Path) -> Path:
    """A fresh admin key file in ``directory``, enrolled as ``CLI_ADMIN_ID``."""
    key_file = directory / "admin.key"
    gateway.enroll(load_or_create_key(key_file), CLI_ADMIN_ID, role=Role.ADMIN)
    return key_file


def admin_args(gateway: RunningGateway, key_file: Path) -> list[str]:
    """``--gateway --ca --key --admin-id`` of an admin enrolled by :func:`enrolled_admin`."""
    return [
        *("--gateway", f"127.0.0.1:{gateway.port}", "--ca", str(gateway.ca)),
        *("--key", str(key_file), "--admin-id", CLI_ADMIN_ID),
    ]
