"""``scripts/mutate`` names modules and the tests that guard them: every name must exist.

A module that moved left its old name in the table, and mutmut mutated nothing and
reported no figure, without an error (``gateway.log.checkpoint`` after it moved to
``storage.checkpoint``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def load_mutation() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation", ROOT / "scripts" / "mutation.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutation", module)
    spec.loader.exec_module(module)
    return module


def test_every_target_module_and_test_file_exists() -> None:
    mutation = load_mutation()
    assert mutation.missing_files(list(mutation.MODULES)) == []


def test_a_stale_target_is_named() -> None:
    mutation = load_mutation()
    mutation.MODULES["gateway.log.moved_away"] = ["tests/test_gone.py"]
    try:
        assert mutation.missing_files(["wire.codec", "gateway.log.moved_away"]) == [
            "edgeswarm/gateway/log/moved_away.py",
            "tests/test_gone.py",
        ]
    finally:
        del mutation.MODULES["gateway.log.moved_away"]


def test_every_mutant_named_equivalent_or_untested_is_of_a_target_module() -> None:
    mutation = load_mutation()
    prefixes = tuple(f"edgeswarm.{m}.x" for m in mutation.MODULES)
    named = [*mutation.EQUIVALENT, *mutation.UNTESTED]
    assert [n for n in named if not n.startswith(prefixes)] == []
    assert set(mutation.EQUIVALENT).isdisjoint(mutation.UNTESTED)
