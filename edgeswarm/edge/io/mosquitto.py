"""A local Mosquitto broker on 127.0.0.1, for the demo, the benchmarks and the tests.

Mosquitto is the Debian package ``mosquitto`` (``apt-get install mosquitto``);
``scripts/test`` installs it when it can, and where the binary is absent the
tests that need it skip, saying so. The broker runs anonymous, in memory
(no persistence), on a free port of 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 10.0


INSTALL_HINT = "install the Debian package: apt-get install mosquitto"


def mosquitto_binary() -> str | None:
    """Path of the ``mosquitto`` binary, or None."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).is_file()), None
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Mosquitto:
    """One broker process; :meth:`stop` and :meth:`start` again keep its port."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    certfile: Path | None = None
    """With ``keyfile``: TLS only (``mqtts://``)."""
    keyfile: Path | None = None
    password_file: Path | None = None
    """A ``mosquitto_passwd`` file: no anonymous clients."""

    def start(self) -> None:
        """Start the broker and return once its port accepts connections."""
        config = self.directory / "mosquitto.conf"
        secure = ""
        if self.certfile is not None and self.keyfile is not None:
            secure += f"certfile {self.certfile}\nkeyfile {self.keyfile}\n"
        if self.password_file is not None:
            secure += f"password_file {self.password_file}\n"
        if os.geteuid() == 0:  # do not drop to user mosquitto: the files are ours, 0600
            secure += "user root\n"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'false' if self.password_file else 'true'}\n"
            f"{secure}"
            "persistence false\n"
            "max_queued_messages 100000\n"
            "set_tcp_nodelay true\n"  # no Nagle delay on the actions (mqtt_loop latency)
        )
        with (self.directory / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # the condition: the port accepts a connection (bounded in time)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise OSError(
                        f"mosquitto did not start: {(self.directory / 'mosquitto.log').read_text()}"
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Terminate the broker (its port stays this object's for a later start)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT`` (add ``/PREFIX`` for ``--io``)."""
        return f"mqtt://127.0.0.1:{self.port}"
