"""Contexts as kubectl users expect them: a gateway's address, CA and admin key saved
once under a name in the user's config file, used by `status` and `state` through
the current context, --context or EDGESWARM_CONTEXT; command-line options win; an
unknown context or key is an error with its own exit status, and a refused admin
key is a refusal (3), not an outage. Real gateway processes on loopback."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from .conftest import RunningGateway, start_gateway, stop_process
from .operator import CLI_ADMIN_ID, cli, enrolled_admin, error_line

pytestmark = pytest.mark.integration


def test_a_saved_context_takes_the_place_of_gateway_ca_and_key(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    config = tmp_path / "home" / "edgeswarm.json"
    env = {"EDGESWARM_CONFIG": str(config)}
    key = enrolled_admin(gateway, tmp_path)
    added = cli(
        *("context", "add", "lab", "--gateway", f"127.0.0.1:{gateway.port}"),
        *("--ca", str(gateway.ca), "--key", str(key), "--admin-id", CLI_ADMIN_ID, "--json"),
        env=env,
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["current"] is True  # the first one is current
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600  # it names a private key
    listed = cli("context", "list", "--json", env=env)
    [record] = json.loads(listed.stdout)
    assert record["name"] == "lab"
    assert record["gateway"] == f"127.0.0.1:{gateway.port}"

    status = cli("status", "--json", env=env, cwd=tmp_path)  # no --gateway --ca --key
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["gateway_id"] == "gateway-0"
    assert status.stderr == ""  # no stray log lines around the answer

    other = start_gateway(tmp_path / "gw2", "--gateway-id", "gw-two")
    try:
        key2 = enrolled_admin(other, tmp_path / "gw2")
        assert (
            cli(
                *("context", "add", "two", "--gateway", f"127.0.0.1:{other.port}"),
                *("--ca", str(other.ca), "--key", str(key2), "--admin-id", CLI_ADMIN_ID),
                env=env,
            ).returncode
            == 0
        )
        by_env = cli("status", "--json", env={**env, "EDGESWARM_CONTEXT": "two"})
        assert json.loads(by_env.stdout)["gateway_id"] == "gw-two"
        by_option = cli("status", "--json", "--context", "two", env=env)
        assert json.loads(by_option.stdout)["gateway_id"] == "gw-two"
        assert cli("context", "use", "two", env=env).returncode == 0
        current = cli("status", "--json", env=env)
        assert json.loads(current.stdout)["gateway_id"] == "gw-two"
        # an option on the command line wins over the context
        overridden = cli(
            *("status", "--json", "--gateway", f"127.0.0.1:{gateway.port}"),
            *("--ca", str(gateway.ca), "--key", str(key)),
            env=env,
        )
        assert json.loads(overridden.stdout)["gateway_id"] == "gateway-0"
    finally:
        stop_process(other.process)

    unknown = cli("status", "--context", "nosuch", env=env)
    assert unknown.returncode == 2
    line = error_line(unknown)
    assert "no context 'nosuch'" in line
    assert "lab" in line  # the ones there are
    assert "two" in line

    removed = cli("context", "remove", "lab", "--json", env=env)
    assert removed.returncode == 0
    assert [r["name"] for r in json.loads(cli("context", "list", "--json", env=env).stdout)] == [
        "two"
    ]
    assert cli("context", "remove", "lab", env=env).returncode == 1


def test_state_get_of_a_missing_key_exits_1(gateway: RunningGateway, tmp_path: Path) -> None:
    key = enrolled_admin(gateway, tmp_path)
    target = (
        *("--gateway", f"127.0.0.1:{gateway.port}", "--ca", str(gateway.ca)),
        *("--key", str(key), "--admin-id", CLI_ADMIN_ID),
    )
    result = cli("state", "get", "nosuch/key", *target)
    assert result.returncode == 1
    assert "no key or group 'nosuch/key'" in error_line(result)
    everything = cli("state", "get", "--json", *target)
    assert everything.returncode == 0, everything.stderr


def test_a_refused_admin_key_exits_3_and_says_so(gateway: RunningGateway, tmp_path: Path) -> None:
    from edgeswarm.identity import load_or_create_key

    key = tmp_path / "stranger.key"
    load_or_create_key(key)
    result = cli(
        *("status", "--gateway", f"127.0.0.1:{gateway.port}", "--ca", str(gateway.ca)),
        *("--key", str(key)),
    )
    assert result.returncode == 3
    line = error_line(result)
    assert "UNKNOWN_PEER" in line
    assert "keys add" in line  # what to do
    assert "cannot reach" not in line


def test_debug_shows_the_traceback_and_nothing_else_does(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = ("gateway", "--data-dir", str(blocker / "sub"), "--metrics-port", "-1")
    plain = cli(*args)
    assert plain.returncode == 1
    error_line(plain)  # one line, no traceback
    debug = cli("--debug", *args)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
