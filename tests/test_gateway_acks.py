"""The gateway's acknowledgement bookkeeping (``gateway/acks.py``), sans-I/O."""

from __future__ import annotations

from edgeswarm.gateway.acks import Acknowledger
from edgeswarm.wire import Ack


def test_one_ack_per_batch_and_credit_grows_with_each() -> None:
    acks = Acknowledger(credit_limit=4)
    assert acks.committed(1, 10, window=4) == Ack(seq=1, accepted=10, credit=5)
    assert acks.committed(2, 3, window=2) == Ack(seq=2, accepted=3, credit=5)  # never lowered
    assert acks.take() is None  # nothing waits without ack_through


def test_cumulative_ack_covers_the_group_once() -> None:
    acks = Acknowledger(credit_limit=4, cumulative=True)
    assert acks.committed(1, 10, window=4) is None
    assert acks.committed(2, 5, window=4) is None
    assert acks.take() == Ack(seq=2, accepted=15, credit=6)
    assert acks.take() is None
    assert acks.committed(3, 1, window=4) is None
    assert acks.take() == Ack(seq=3, accepted=1, credit=7)
