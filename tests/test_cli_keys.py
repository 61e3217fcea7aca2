"""``edgeswarm keys``, end to end: each command a real process, against a running gateway."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgeswarm.identity import KeyPair, fingerprint, public_key_text

from .conftest import ADMIN_ID, RunningGateway, edgeswarm_command
from .raw_peer import attempt, refusal, welcomed

pytestmark = pytest.mark.integration


def keys(*args: str) -> subprocess.CompletedProcess[str]:
    """``edgeswarm keys ARGS`` in a process of its own; rich tables 200 columns wide."""
    return subprocess.run(
        edgeswarm_command("keys", *args),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def listed(data_dir: str) -> list[dict[str, object]]:
    result = keys("list", "--data-dir", data_dir, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_keys_init_add_list_remove_and_issue_drive_who_gets_in(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    data_dir = str(gateway.data_dir)
    key_file = tmp_path / "edge-k.key"

    made = keys("init", "--key", str(key_file))
    assert made.returncode == 0, made.stderr
    pair = KeyPair.load(key_file)
    text = public_key_text(pair.public_key)
    assert made.stdout.strip() == f"{text}  ({fingerprint(pair.public_key)})"
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = keys("init", "--key", str(key_file), "--json")  # shows the existing key
    assert json.loads(again.stdout) == {
        "key": str(key_file),
        "public_key": text,
        "fingerprint": fingerprint(pair.public_key),
    }

    added = keys(
        "add", "--data-dir", data_dir, "--peer-id", "edge-k", "--public-key", text, "--json"
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {
        "peer_id": "edge-k",
        "role": "edge",
        "fingerprint": fingerprint(pair.public_key),
    }
    assert welcomed(asyncio.run(attempt(gateway, pair, "edge-k")))

    other = public_key_text(KeyPair.generate().public_key)
    taken = keys("add", "--data-dir", data_dir, "--peer-id", "edge-k", "--public-key", other)
    assert taken.returncode == 1  # the registry's state refuses it, not the command line
    assert taken.stderr.startswith("error: peer id 'edge-k' already belongs to key ")
    assert len(taken.stderr.strip().splitlines()) == 1

    table = keys("list", "--data-dir", data_dir)
    assert table.returncode == 0, table.stderr
    assert table.stdout.lstrip().startswith("peers of")  # the title (wrapped to the table)
    for cell in ("edge-k", "edge", fingerprint(pair.public_key), "operator", ADMIN_ID, "admin"):
        assert cell in table.stdout
    peers = listed(data_dir)
    assert [(p["peer_id"], p["role"], p["via"]) for p in peers] == [
        ("edge-k", "edge", "operator"),
        (ADMIN_ID, "admin", "operator"),
    ]
    assert peers[0]["public_key"] == text

    removed = keys("remove", "--data-dir", data_dir, "--peer-id", "edge-k")
    assert (removed.returncode, removed.stdout.strip()) == (0, "removed edge-k")
    assert refusal(asyncio.run(attempt(gateway, pair, "edge-k"))).name == "UNKNOWN_PEER"
    gone = keys("remove", "--data-dir", data_dir, "--peer-id", "edge-k")
    assert gone.returncode == 1
    assert gone.stderr.strip() == f"error: no peer 'edge-k' in {data_dir}/peers.db"

    issued = keys("issue", "--data-dir", data_dir, "--role", "edge", "--uses", "2", "--json")
    assert issued.returncode == 0, issued.stderr
    record = json.loads(issued.stdout)
    assert (record["role"], record["uses"], record["ttl_s"]) == ("edge", 2, 24 * 3600.0)
    token = record["token"]
    for peer_id in ("joined-1", "joined-2"):
        assert welcomed(
            asyncio.run(attempt(gateway, KeyPair.generate(), peer_id, join_token=token))
        )
    third = asyncio.run(attempt(gateway, KeyPair.generate(), "joined-3", join_token=token))
    assert refusal(third).name == "BAD_TOKEN"  # used up
    via = {
        p["peer_id"]: p["via"]
        for p in json.loads(keys("list", "--data-dir", data_dir, "--json").stdout)
    }
    token_id = token.split(".")[1]
    assert via == {
        ADMIN_ID: "operator",
        "joined-1": f"token:{token_id}",
        "joined-2": f"token:{token_id}",
    }
    plain = keys("issue", "--data-dir", data_dir, "--role", "admin", "--ttl", "60")
    assert plain.returncode == 0
    assert plain.stdout.strip().startswith("es1.")


def test_keys_refuse_bad_key_files_and_bad_input_with_one_line(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "gw")
    open_key = tmp_path / "open.key"
    KeyPair.generate().save(open_key)
    open_key.chmod(0o644)
    not_pem = tmp_path / "junk.key"
    not_pem.write_text("not a key\n")
    not_pem.chmod(0o600)
    ec_key = tmp_path / "ec.key"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ec_key.chmod(0o600)
    cases = [
        (
            ("init", "--key", str(open_key)),
            f"key {open_key} is readable by others (mode 644); chmod 600",
        ),
        (("init", "--key", str(not_pem)), f"{not_pem} is not an unencrypted PEM private key"),
        (("init", "--key", str(ec_key)), f"{ec_key} holds a ECPrivateKey, not an ed25519 key"),
        (
            ("add", "--data-dir", data_dir, "--peer-id", "x", "--public-key", "ed25519:AAAA"),
            "--public-key: an ed25519 public key is 32 bytes, 'ed25519:AAAA' has 3",
        ),
        (
            (
                "add",
                "--data-dir",
                data_dir,
                "--peer-id",
                "x" * 129,
                "--public-key",
                public_key_text(KeyPair.generate().public_key),
            ),
            "--peer-id: a peer id has 1 to 128 characters",
        ),
    ]
    for args, message in cases:
        result = keys(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith(f"error: {message}"), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stdout == ""
    usage = keys("issue", "--data-dir", data_dir, "--uses", "0")
    assert usage.returncode == 2
    assert "--uses" in usage.stderr
    assert not (tmp_path / "gw" / "peers.db").exists()  # nothing added, no registry made
