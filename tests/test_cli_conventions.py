"""The command line as users of kubectl or nats expect it: an environment variable for
every option, flags without a value type, choices shown, examples in every help,
completion, `version`, addresses parsed strictly with the option named, one-line
usage errors with status 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer

from edgeswarm import __version__
from edgeswarm.cli.app import app
from edgeswarm.gateway.peers import PeerRegistry
from edgeswarm.identity import KeyPair, load_or_create_key
from edgeswarm.wire import Role

from .operator import cli, error_line

WIDE = {"COLUMNS": "240", "TERMINAL_WIDTH": "240"}


def command_tree() -> Any:
    from edgeswarm.cli import conventions

    root = typer.main.get_command(app)
    conventions.apply(root)
    return root


def leaves(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    children = getattr(command, "commands", None)
    if not children:
        return [(path, command)]
    found = []
    for name, child in children.items():
        found.extend(leaves(child, (*path, name)))
    return found


def test_every_option_of_every_command_has_an_edgeswarm_environment_variable() -> None:
    missing = []
    for path, command in leaves(command_tree()):
        for param in command.params:
            if param.param_type_name != "option" or param.is_eager or param.hidden:
                continue
            envvar = param.envvar
            if not (isinstance(envvar, str) and envvar.startswith("EDGESWARM_")):
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert not missing
    assert len(leaves(command_tree())) >= 15  # the walk reached the subcommands


def test_an_environment_variable_sets_its_option(tmp_path: Path) -> None:
    key = KeyPair.generate()
    with PeerRegistry(tmp_path / "gw" / "peers.db") as registry:
        registry.add_peer(key.public_key, "edge-env", Role.EDGE)
    result = cli(
        "keys", "list", "--json", env={"EDGESWARM_KEYS_LIST_DATA_DIR": str(tmp_path / "gw")}
    )
    assert result.returncode == 0, result.stderr
    assert "edge-env" in result.stdout
    assert not (tmp_path / "var").exists()


def test_every_command_shows_examples_in_its_help() -> None:
    without = [" ".join(path) for path, command in leaves(command_tree())
               if "Examples" not in (command.help or "")]  # fmt: skip
    assert not without


def test_flags_show_no_value_type_and_enumerated_options_show_their_choices() -> None:
    state_get = cli("state", "get", "--help", env=WIDE)
    assert state_get.returncode == 0
    assert "<bool>" not in state_get.stdout
    assert "--json" in state_get.stdout
    edge = cli("edge", "--help", env=WIDE).stdout
    gateway = cli("gateway", "--help", env=WIDE).stdout
    assert "<bool>" not in edge + gateway
    for choices in ("<block|drop_oldest>", "<zero|hold>", "<aioquic|qh3>"):
        assert choices in edge
    for choices in ("<always|normal|off>", "<debug|info|warning|error>"):
        assert choices in gateway
    assert "EDGESWARM_GATEWAY_FSYNC" in gateway  # the variable, shown


def test_a_wrong_choice_is_one_usage_line_naming_the_option() -> None:
    result = cli("gateway", "--log-level", "verbose", "--metrics-port", "-1")
    assert result.returncode == 2
    line = error_line(result)
    assert "--log-level" in line
    assert "verbose" in line
    assert "edgeswarm gateway --help" in line


def test_version_command_and_flag() -> None:
    result = cli("version", "--json")
    assert result.returncode == 0
    record = json.loads(result.stdout)
    assert record["edgeswarm"] == __version__
    assert {"python", "wasmtime", "qh3", "aioquic", "pycrdt"} <= set(record)
    flag = cli("--version")
    assert (flag.returncode, flag.stdout.strip()) == (0, __version__)


def test_shell_completion_is_offered() -> None:
    result = cli("keys", env={"_EDGESWARM_COMPLETE": "complete_bash", "COMP_WORDS": "edgeswarm ke",
                              "COMP_CWORD": "1"})  # fmt: skip
    assert result.returncode == 0
    assert result.stdout.split() == ["keys"]


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("https://gw.example:4433", "without a scheme"),
        ("gw.example", "has no port"),
        ("gw.example:http", "--gateway"),
        ("gw.example:70000", "--gateway"),
    ],
)
def test_a_loose_gateway_address_is_a_usage_error_naming_the_option(
    tmp_path: Path, address: str, says: str
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("")
    load_or_create_key(tmp_path / "admin.key")
    result = cli(
        *("status", "--gateway", address, "--ca", str(ca)),
        *("--key", str(tmp_path / "admin.key")),
        timeout=60,
    )
    assert result.returncode == 2
    line = error_line(result)
    assert "--gateway" in line
    assert says in line
