"""A real OCI registry (CNCF distribution, Debian's ``docker-registry``) on 127.0.0.1.

``scripts/test`` installs the package when it can (root with apt-get); where the
binary is absent the tests that need it skip, saying so.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 15.0


def registry_binary() -> str | None:
    return shutil.which("docker-registry")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OciRegistry:
    """One registry process with its storage in a temporary directory."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_registry(binary: str, directory: Path) -> OciRegistry:
    port = free_port()
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = directory / "registry.log"
    with log.open("ab") as out:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=out)
    registry = OciRegistry(process, port, directory)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:  # the condition: GET /v2/ answers 200 (bounded in time)
        try:
            with urllib.request.urlopen(f"http://{registry.host}/v2/", timeout=1) as response:
                if response.status == 200:
                    return registry
        except (urllib.error.URLError, OSError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            registry.stop()
            raise RuntimeError(f"docker-registry did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
