"""Every default is defined once, in a configuration dataclass, and the CLI shows that one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.core import TyperGroup

import edgeswarm
from edgeswarm.cli.admin_target import admin_target
from edgeswarm.cli.app import app
from edgeswarm.cli.options import DEFAULT_ADMIN_KEY
from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.admin import DEFAULT_ADMIN_ID, DEFAULT_TIMEOUT_S
from edgeswarm.edge.config import EdgeConfig
from edgeswarm.gateway.config import GatewayConfig
from edgeswarm.identity import load_or_create_key


def _defaults(*path: str) -> dict[str, Any]:
    command = typer.main.get_command(app)
    for name in path:
        assert isinstance(command, TyperGroup)
        command = command.commands[name]
    return {param.name: param.default for param in command.params if param.name}


def _edge_default(name: str) -> Any:
    [field] = [f for f in EdgeConfig.__dataclass_fields__.values() if f.name == name]
    return field.default


def test_gateway_command_defaults_are_the_gateway_config_defaults() -> None:
    shown, config = _defaults("gateway"), GatewayConfig()
    assert shown["listen"] == f"{config.host}:{config.port}"
    for option in ("data_dir", "gateway_id", "max_batch_agents", "credit_window", "fsync"):
        assert shown[option] == getattr(config, option), option
    assert shown["metrics_port"] == config.metrics_port
    assert shown["hello_timeout"] == config.hello_timeout_s
    assert shown["log_scrub_interval"] == config.log_scrub_interval_s
    for option in ("max_unauthenticated", "max_unauthenticated_per_address", "retry_above"):
        assert shown[option] == getattr(config.preauth, option), option
    assert shown["max_datagram_size"] == config.transport.max_datagram_size == 1350


def test_edge_command_defaults_are_the_edge_config_defaults() -> None:
    shown = _defaults("edge")
    renamed = {
        "policy_fuel": "policy_fuel_per_agent",
        "drain_timeout": "drain_timeout_s",
        "ack_timeout": "ack_timeout_s",
        "progress_interval": "progress_interval_s",
    }
    same = (
        *("agents", "first_agent_id", "policy_fallback", "policy_memory_mb", "seed"),
        *("tick_hz", "batch_agents", "spool_max_bytes", "overflow", "metrics_port"),
        *("spool_fsync", "max_datagram_size"),
    )
    for option in (*same, *renamed):
        assert shown[option] == _edge_default(renamed.get(option, option)), option
    address = GatewayAddress(ca_file=Path("ca.crt"))
    assert shown["gateway_addr"] == [f"{address.host}:{address.port}"]  # --gateway repeats


def test_infer_command_defaults_are_the_node_config_defaults() -> None:
    from edgeswarm.inference.node import NodeConfig

    shown, config = _defaults("infer"), NodeConfig()
    for option in ("device", "node_id", "data_dir", "max_rows", "max_pending", "metrics_port"):
        assert shown[option] == getattr(config, option), option
    assert shown["http"] == f"{config.http_host}:{config.http_port}"


def test_gateway_heavy_lane_defaults_are_the_lane_config_defaults() -> None:
    shown, lane = _defaults("gateway"), GatewayConfig().heavy
    assert shown["infer_max_batch"] == lane.max_batch_rows == 512
    assert shown["infer_max_wait_ms"] == lane.max_wait_s * 1e3 == 2.0
    assert shown["infer_window"] == lane.infer_window


def test_admin_commands_defaults_are_the_admin_client_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = GatewayAddress(ca_file=Path("ca.crt"))
    for path in (("status",), ("state", "get"), ("state", "watch")):
        shown = _defaults(*path)
        # left out, they come from the context, then from the defaults below
        assert (shown["gateway_addr"], shown["admin_id"], shown["key"]) == (None, None, None)
        assert shown["timeout"] == DEFAULT_TIMEOUT_S, path
    monkeypatch.setenv("EDGESWARM_CONFIG", str(tmp_path / "no-config.json"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ca.crt").write_text("")
    load_or_create_key(tmp_path / DEFAULT_ADMIN_KEY)
    target = admin_target(
        context=None,
        gateway=None,
        ca=Path("ca.crt"),
        key=None,
        admin_id=None,
        server_name=None,
    )
    assert (target.address.host, target.address.port) == (address.host, address.port)
    assert target.admin_id == DEFAULT_ADMIN_ID


def test_the_port_and_the_stacks_are_written_down_once() -> None:
    package = Path(edgeswarm.__file__).parent
    sources = {
        path.relative_to(package).as_posix(): path.read_text() for path in package.rglob("*.py")
    }
    assert [name for name, text in sources.items() if re.search(r"\b4433\b", text)] == [
        "transport/api.py"
    ]
    stacks = re.compile(r"""\(\s*["']aioquic["'],\s*["']qh3["']\s*\)""")
    assert [name for name, text in sources.items() if stacks.search(text)] == [
        "transport/stacks.py"
    ]
