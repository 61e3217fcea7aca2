"""The container images: the Dockerfiles pass hadolint, and the image's lock file
pins every runtime dependency of pyproject.toml at a version it allows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import RunningGateway
from .k3s_tools import REPO, venv_tool

DOCKERFILES = ("Dockerfile", "Dockerfile.gpu")
LOCK = REPO / "docker" / "requirements.lock"
GPU_LOCK = REPO / "docker" / "requirements-gpu.lock"


def pins(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            found[canonicalize_name(name)] = version
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    done = subprocess.run(
        [str(venv_tool("hadolint")), "--failure-threshold", "info", dockerfile],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_fails_a_dockerfile_with_an_unpinned_install(tmp_path: Path) -> None:
    """The lint is not a formality: the classic mistakes fail it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.12-slim\nRUN pip install edgeswarm\nCMD edgeswarm\n")
    done = subprocess.run(
        [str(venv_tool("hadolint")), str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "DL3013" in done.stdout


def test_the_lock_pins_every_runtime_dependency_within_its_bounds() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    locked = pins(LOCK)
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is not in {LOCK.name}: run scripts/lock-image"
        assert requirement.specifier.contains(locked[name]), (
            f"{LOCK.name} pins {requirement.name}=={locked[name]}, pyproject wants"
            f" {requirement.specifier}: run scripts/lock-image"
        )
    for spec in project["optional-dependencies"]["gpu"]:
        requirement = Requirement(spec)
        version = pins(GPU_LOCK)[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), f"{GPU_LOCK.name}: {requirement}"


def test_the_images_copy_only_what_dockerignore_lets_through() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for dockerfile in DOCKERFILES:
        text = (REPO / dockerfile).read_text()
        for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.MULTILINE):
            for source in sources.split():
                top = source.split("/")[0]
                assert top in allowed, (
                    f"{dockerfile} copies {source}, which .dockerignore leaves out"
                )
                assert (REPO / source).exists(), (
                    f"{dockerfile} copies {source}, which does not exist"
                )


def healthcheck(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "docker" / "healthcheck.py")],
        env={**os.environ, "EDGESWARM_HEALTHCHECK_URL": url},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_image_healthcheck_asks_a_live_daemon(gateway: RunningGateway) -> None:
    assert healthcheck(f"http://127.0.0.1:{gateway.metrics_port}/healthz").returncode == 0
    # a port nobody serves (the gateway's QUIC port is UDP): unhealthy, one line saying so
    done = healthcheck(f"http://127.0.0.1:{gateway.port}/healthz")
    assert done.returncode == 1
    assert done.stderr == "no edgeswarm daemon answers /healthz\n"
    # a daemon that answers something else than 200
    assert healthcheck(f"http://127.0.0.1:{gateway.metrics_port}/nowhere").returncode == 1
