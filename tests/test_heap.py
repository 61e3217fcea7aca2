"""A daemon's start-up objects leave the collector's full collections (``edgeswarm.heap``)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import pytest

from edgeswarm.heap import freeze_startup_objects


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the suite runs as before


def walked(objects: list[list[int]]) -> int:
    """How many of ``objects`` a full collection walks (the generations it looks at)."""
    ids = {id(o) for o in objects}
    return sum(id(o) in ids for generation in range(3) for o in gc.get_objects(generation))


def test_start_up_objects_are_frozen_and_a_full_collection_skips_them(
    unfrozen: None, caplog: pytest.LogCaptureFixture
) -> None:
    kept = [[n] for n in range(200_000)]  # a daemon's long-lived tables and modules
    gc.collect()
    assert walked(kept) == len(kept)
    with caplog.at_level(logging.INFO, logger="edgeswarm.heap"):
        frozen = freeze_startup_objects("edge")
    assert frozen >= len(kept)
    assert walked(kept) == 0  # in the permanent generation: no collection walks them
    fresh = [[n] for n in range(10)]
    assert walked(fresh) == len(fresh)  # what comes later is collected as always
    [record] = [r for r in caplog.records if r.name == "edgeswarm.heap"]
    assert record.getMessage() == "start-up objects left out of garbage collection"
    assert (record.daemon, record.frozen_objects) == ("edge", frozen)  # type: ignore[attr-defined]
    assert len(kept) == 200_000  # nothing frozen is freed
