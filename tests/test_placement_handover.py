"""The hand-over table (edgeswarm.placement.handover), without sockets.

The table's rules, one event at a time; tests/test_placement_migration.py
checks its invariants on simulated edges driven by the migration coordinator.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgeswarm.placement import (
    Handover,
    HandoverEvent,
    HandoverRefusedError,
    HandoverState,
    Membership,
    MemberState,
    assign,
    plan_moves,
)
from edgeswarm.placement import handover as handover_module

E = HandoverEvent


def batch_handover() -> Handover:
    membership = Membership().joined("edge-a").joined("edge-b")
    old = assign(np.arange(10, dtype=np.uint32), membership)
    new_m = membership.with_state("edge-a", MemberState.DRAINING)
    plan = plan_moves(old, assign(np.arange(10, dtype=np.uint32), new_m), new_m)
    return Handover(plan.batches[0], new_m.epoch, 0)


def test_stale_epoch_wrong_sender_and_forbidden_events_are_refused_and_change_nothing():
    h = batch_handover()
    h.on(E.RELEASE_SENT, sender="gateway", epoch=h.epoch, number=0)
    with pytest.raises(HandoverRefusedError, match="stale"):
        h.on(E.ROWS_RECEIVED, sender="edge-a", epoch=h.epoch - 1, number=0)
    with pytest.raises(HandoverRefusedError, match="must come from edge-a"):
        h.on(E.ROWS_RECEIVED, sender="edge-b", epoch=h.epoch, number=0)
    with pytest.raises(HandoverRefusedError, match="not allowed"):
        h.on(E.ADOPTED, sender="edge-b", epoch=h.epoch, number=0)
    assert h.state is HandoverState.RELEASING
    assert h.holder() == "edge-a"
    h.on(E.ROWS_RECEIVED, sender="edge-a", epoch=h.epoch, number=0)
    assert h.holder() is None
    h.on(E.ADOPT_SENT, sender="gateway", epoch=h.epoch, number=0)
    h.on(E.ADOPTED, sender="edge-b", epoch=h.epoch, number=0)
    assert h.finished
    assert h.holder() == "edge-b"
    assert h.history == [
        HandoverState.PLANNED,
        HandoverState.RELEASING,
        HandoverState.HELD,
        HandoverState.ADOPTING,
    ]


def test_the_table_in_the_docstring_is_the_table_in_the_code():
    rows = re.findall(
        r"^\s{4}([A-Z]+)\s+([A-Z_]+)\s+([A-Z]+)\s+(gateway|the source edge|the target edge)",
        handover_module.__doc__,
        re.MULTILINE,
    )
    role = {"gateway": "gateway", "the source edge": "source", "the target edge": "target"}
    documented = {
        (HandoverState[s], HandoverEvent[e]): (HandoverState[n], role[who]) for s, e, n, who in rows
    }
    assert documented == handover_module.TRANSITIONS
