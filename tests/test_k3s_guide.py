"""docs/deploy-k3s.md can be followed as written: every ``edgeswarm`` command in
its shell blocks is a real command with real options, and every file it names
exists."""

from __future__ import annotations

import re
import shlex

import pytest

from .k3s_tools import REPO
from .test_k3s_manifests import cli, leaf

GUIDE = REPO / "docs" / "deploy-k3s.md"
NOT_YET: dict[tuple[str, ...], str] = {}
"""Steps the guide writes ahead of the branches that add their commands (command paths)."""
SHELL_SAMPLES = {
    "role": "edge",
    "id": "node-1",
    "key": "ed25519:" + "A" * 43,
    "PUBLIC_KEY": "ed25519:" + "A" * 43,
    "gw": "0",
    "other": "1",
}
"""Values of the shell variables the guide's commands use, for parsing them."""


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)


def edgeswarm_commands(block: str) -> list[list[str]]:
    """Each ``edgeswarm ...`` invocation in a block, up to a pipe, redirect or end."""
    joined = block.replace("\\\n", " ")
    commands = []
    # in command position: a line's start, $( ... ), after `kubectl exec ... --`, a pipe or &&
    position = r"(?:^[ \t]*|\$\(|\s--\s+|\|\s*|&&\s*)"
    for match in re.finditer(position + r"edgeswarm\s+([^|;>)\n]*)", joined, flags=re.MULTILINE):
        words = shlex.split(match.group(1), comments=True)
        commands.append([re.sub(r"\$(\w+)", lambda m: SHELL_SAMPLES[m.group(1)], w) for w in words])
    return commands


def test_the_guide_runs_only_real_commands_and_options() -> None:
    root = cli()
    found = [c for block in shell_blocks(GUIDE.read_text()) for c in edgeswarm_commands(block)]
    assert len(found) >= 10
    checked = 0
    for words in found:
        if any(tuple(words[: len(path)]) == path for path in NOT_YET):
            continue
        command, path, arguments = leaf(root, words)
        assert path, f"no such command: edgeswarm {' '.join(words)}"
        assert not hasattr(command, "commands"), f"a subcommand is missing: edgeswarm {words}"
        try:
            command.make_context("edgeswarm " + " ".join(path), arguments)
        except Exception as exc:
            pytest.fail(f"edgeswarm {' '.join(words)}: {exc}")
        checked += 1
    assert checked >= 10


def test_the_commands_written_ahead_are_still_missing() -> None:
    """When a branch adds one, the guide's step must be checked too: drop it from NOT_YET."""
    root = cli()
    for path, why in NOT_YET.items():
        command = root
        for name in path:
            command = getattr(command, "commands", {}).get(name)
            if command is None:
                break
        assert command is None, (
            f"`edgeswarm {' '.join(path)}` exists now ({why}): remove it from NOT_YET"
        )


def test_every_repository_path_the_guide_names_exists() -> None:
    text = GUIDE.read_text()
    paths = set(re.findall(r"(?<![\w/.-])((?:k3s|docker|scripts|docs|tests)/[\w./-]+\w)", text))
    paths |= {p for p in ("Dockerfile", "Dockerfile.gpu") if p in text}
    assert len(paths) >= 8
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing, f"docs/deploy-k3s.md names files that do not exist: {missing}"
