"""Prometheus series of the durable observation log, read at scrape time.

The log keeps its own counters (:class:`~edgeswarm.gateway.log.records.LogStats`);
this collector turns one snapshot of them into series when Prometheus scrapes,
so the commit path pays nothing for metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .records import COMMIT_SECONDS_BUCKETS
from .scrub import Scrubber
from .store import ObservationLog

_COUNTERS = (
    ("commits", "Group commits of the observation log"),
    ("records", "Batches written by group commits (new and duplicates)"),
    ("failed_commits", "Group commits that failed (their batches were not acknowledged)"),
    ("checkpoints", "WAL checkpoints of the observation log's index"),
    ("wal_restarts", "Checkpoints the log writer ran itself to restart a full WAL"),
    ("failed_checkpoints", "Checkpoints that failed (retried at the next one)"),
    ("page_cache_released_bytes", "Segment bytes taken out of the page cache once on disk"),
    ("failed_page_cache_releases", "Page cache releases that failed (those pages stay cached)"),
)


class LogCollector(Collector):
    """``edgeswarm_gateway_log_*`` series of one :class:`ObservationLog`."""

    def __init__(self, log: ObservationLog) -> None:
        self._log = log

    def collect(self) -> Iterator[Metric]:
        stats = self._log.stats
        for name, documentation in _COUNTERS:
            yield CounterMetricFamily(
                f"edgeswarm_gateway_log_{name}", documentation, value=getattr(stats, name)
            )
        yield GaugeMetricFamily(
            "edgeswarm_gateway_log_pending_bytes",
            "Payload bytes queued for the log and not yet committed",
            value=self._log.pending_bytes,
        )
        cumulative, buckets = 0, []
        for bound, count in zip(
            (*COMMIT_SECONDS_BUCKETS, math.inf), stats.commit_seconds_counts, strict=True
        ):
            cumulative += count
            buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "edgeswarm_gateway_log_commit_seconds",
            "Duration of each group commit (segment write, index insert, COMMIT, fsyncs)",
            buckets=buckets,
            sum_value=stats.commit_seconds_sum,
        )
        yield GaugeMetricFamily(
            "edgeswarm_gateway_log_last_group_records",
            "Batches in the last group commit",
            value=stats.last_group_records,
        )
        yield GaugeMetricFamily(
            "edgeswarm_gateway_log_records_lost_at_open",
            "Committed batches dropped when the log opened because their bytes were gone",
            value=stats.lost_on_open,
        )


class ScrubCollector(Collector):
    """``edgeswarm_gateway_log_scrub_*`` series of one :class:`Scrubber`."""

    def __init__(self, scrubber: Scrubber) -> None:
        self._scrubber = scrubber

    def collect(self) -> Iterator[Metric]:
        stats = self._scrubber.stats
        yield CounterMetricFamily(
            "edgeswarm_gateway_log_scrub_runs",
            "Scrubs of the observation log completed",
            value=stats.runs,
        )
        yield CounterMetricFamily(
            "edgeswarm_gateway_log_scrub_rows", "Index rows the scrubs checked", value=stats.rows
        )
        yield CounterMetricFamily(
            "edgeswarm_gateway_log_scrub_problems",
            "Damaged rows, payloads or database pages the scrubs found",
            value=stats.problems,
        )
        yield CounterMetricFamily(
            "edgeswarm_gateway_log_scrub_failures",
            "Scrubs that could not read the index at all",
            value=stats.failures,
        )
        yield GaugeMetricFamily(
            "edgeswarm_gateway_log_scrub_last_problems",
            "Damage found by the last completed scrub (0: clean)",
            value=stats.last_problems,
        )
        yield GaugeMetricFamily(
            "edgeswarm_gateway_log_scrub_last_completed_timestamp_seconds",
            "When the last scrub completed (Unix time; 0: none yet)",
            value=stats.last_completed,
        )
