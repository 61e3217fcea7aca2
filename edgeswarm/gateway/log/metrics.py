"""Prometheus series of the durable observation log, read at scrape time.

The log keeps its own counters (:class:`~edgeswarm.gateway.log.records.LogStats`);
this collector turns one snapshot of them into series when Prometheus scrapes,
so the commit path pays nothing for metrics.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .scrub import Scrubber
from .store import ObservationLog

_COUNTERS = (
    ("commits", "Group commits of the observation log"),
    ("records", "Batches written by group commits (new and duplicates)"),
    ("failed_commits", "Group commits that failed (their batches were not acknowledged)"),
    ("checkpoints", "WAL checkpoints of the observation log's index"),
    ("wal_restarts", "Checkpoints the log writer ran itself to restart a full WAL"),
    ("failed_checkpoints", "Checkpoints that failed (retried at the next one)"),
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
        yield GaugeMetricFamily(
            "edgeswarm_gateway_log_last_commit_seconds",
            "Duration of the last group commit (segment write, index insert, COMMIT)",
            value=stats.last_commit_latency_s,
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
