"""The connection options every admin command takes, declared once (``gateway_options``)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgeswarm.cli.admin_target import Target, gateway_options
from edgeswarm.client.admin import DEFAULT_TIMEOUT_S

OPTIONS = ["context", "gateway_addr", "ca", "key", "admin_id", "server_name", "timeout"]


def _command() -> tuple[typer.Typer, list[tuple[str, Target]]]:
    seen: list[tuple[str, Target]] = []
    app = typer.Typer()

    @app.command()
    @gateway_options
    def probe(name: str, loud: bool = False, *, target: Target) -> None:
        """A command that asks a gateway."""
        seen.append((name, target))

    return app, seen


def test_the_options_stand_in_the_targets_place() -> None:
    def command(edge: str, as_json: bool = False, *, target: Target) -> None: ...

    names = list(inspect.signature(gateway_options(command)).parameters)
    assert names == ["edge", "as_json", *OPTIONS]


def test_the_command_is_called_with_the_options_as_one_target(tmp_path: Path) -> None:
    app, seen = _command()
    args = ["edge-1", "--gateway", "gw:4433", "--ca", str(tmp_path / "ca.crt")]
    result = CliRunner().invoke(app, [*args, "--admin-id", "ops", "--timeout", "2.5"])
    assert result.exit_code == 0, result.output
    assert seen == [
        (
            "edge-1",
            Target(gateway_addr="gw:4433", ca=tmp_path / "ca.crt", admin_id="ops", timeout=2.5),
        )
    ]


def test_options_left_out_keep_their_defaults() -> None:
    app, seen = _command()
    assert CliRunner().invoke(app, ["edge-1"]).exit_code == 0
    assert seen == [("edge-1", Target(timeout=DEFAULT_TIMEOUT_S))]


def test_the_options_are_checked_as_before() -> None:
    app, _ = _command()
    result = CliRunner().invoke(app, ["edge-1", "--timeout", "0"])
    assert result.exit_code == 2  # min=0.1
    assert "--timeout" in result.output


def test_a_command_without_a_target_is_refused_when_declared() -> None:
    def command(edge: str) -> None: ...

    with pytest.raises(TypeError, match="takes no 'target' parameter"):
        gateway_options(command)
