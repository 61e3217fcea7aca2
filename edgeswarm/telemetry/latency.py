"""A mergeable latency histogram with log-spaced buckets.

Edges record ack latencies here; the demo merges the histograms of every
edge and reads quantiles from the merged counts. Buckets grow by 2 % from
1 µs to about 100 s, so a quantile is within 2 % of the true value.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

_MIN_S = 1e-6
_GROWTH = 1.02
_BUCKETS = math.ceil(math.log(1e8) / math.log(_GROWTH)) + 1


class LatencyHistogram:
    """Counts of latencies in log-spaced buckets."""

    def __init__(self) -> None:
        self.counts: NDArray[np.int64] = np.zeros(_BUCKETS, dtype=np.int64)

    @staticmethod
    def _bucket(seconds: float) -> int:
        if seconds <= _MIN_S:
            return 0
        index = int(math.log(seconds / _MIN_S) / math.log(_GROWTH)) + 1
        return min(index, _BUCKETS - 1)

    def record(self, seconds: float) -> None:
        """Count one latency."""
        self.counts[self._bucket(seconds)] += 1

    @property
    def total(self) -> int:
        """Number of latencies recorded."""
        return int(self.counts.sum())

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile ``q`` (0..1), in seconds; 0 when empty."""
        total = self.total
        if total == 0:
            return 0.0
        rank = max(1, math.ceil(q * total))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        return _MIN_S * _GROWTH**index

    def merge(self, other: LatencyHistogram) -> None:
        """Add the counts of ``other``."""
        self.counts += other.counts

    def to_sparse(self) -> dict[str, int]:
        """Non-zero buckets as ``{index: count}`` (JSON-friendly)."""
        return {str(i): int(c) for i, c in enumerate(self.counts) if c}

    @classmethod
    def from_sparse(cls, sparse: dict[str, int]) -> LatencyHistogram:
        """Inverse of ``to_sparse``; unknown buckets are clamped to the last one."""
        histogram = cls()
        for key, count in sparse.items():
            histogram.counts[min(int(key), _BUCKETS - 1)] += int(count)
        return histogram
