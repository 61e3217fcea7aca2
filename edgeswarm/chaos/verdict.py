"""What a scenario found: nothing acknowledged lost, nothing applied twice, and its figures.

``acked_lost`` counts batches the gateway acknowledged that its durable log does not
hold; ``duplicates_applied`` counts batches the gateway applied more than once (its
applied counters against the distinct batches in the log) or stored under a second
sequence number (stored batches beyond those the edge sent).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgeswarm.chaos.processes import EDGE_ID, GatewayProcess, logged_batches


def rate(lines: list[dict[str, Any]], start: float, end: float) -> float | None:
    """Observations acknowledged per second between monotonic times ``start`` and ``end``;
    None when fewer than two progress lines fall in the window (the edge had finished)."""
    window = [line for line in lines if start <= line["at"] <= end]
    if len(window) < 2 or window[-1]["at"] <= window[0]["at"]:
        return None
    acked = int(window[-1]["observations_acked"]) - int(window[0]["observations_acked"])
    return round(acked / (float(window[-1]["at"]) - float(window[0]["at"])), 1)


def acked_lost(acknowledged: Iterable[int], data_dir: Path, edge_id: str = EDGE_ID) -> int:
    """Batches in ``acknowledged`` (sequence numbers) missing from the gateway's log."""
    stored = {seq for seq, _ in logged_batches(data_dir, edge_id)}
    return len(set(acknowledged) - stored)


def delivery(
    gateway: GatewayProcess,
    summary: dict[str, Any],
    *,
    returncode: int | None,
    sent_batches: int,
    acknowledged: Iterable[int] = (),
    edge_id: str = EDGE_ID,
) -> dict[str, Any]:
    """The delivery verdict of one edge at the end of a scenario: everything the edge
    sent (``sent_batches``, over all its runs) is in the log once, in one numbering with
    no gap, and the gateway applied each batch once. ``acknowledged``: sequence numbers
    acknowledged before the fault, checked against the log."""
    batches = logged_batches(gateway.data_dir, edge_id)
    seqs = [seq for seq, _ in batches]
    status = gateway.status()
    record: dict[str, Any] = next((r for r in status["edges"] if r.get("peer_id") == edge_id), {})
    applied_batches = int(record.get("batches", 0))
    applied_observations = int(record.get("observations", 0))
    stored_observations = sum(count for _, count in batches)
    duplicates = (
        max(0, applied_batches - len(set(seqs)))
        + max(0, len(seqs) - sent_batches)
        + max(0, applied_observations - stored_observations)
    )
    lost = len(set(acknowledged) - set(seqs)) + max(0, sent_batches - len(set(seqs)))
    checks = edge_checks(summary, returncode, seqs)
    return {
        "acked_lost": lost,
        "duplicates_applied": duplicates,
        "batches_sent": sent_batches,
        "batches_stored": len(seqs),
        "failed_checks": sorted(name for name, ok in checks.items() if not ok),
    }


def edge_checks(
    summary: dict[str, Any], returncode: int | None, stored: Iterable[int]
) -> dict[str, bool]:
    """What every delivery verdict asks of the edge: it ended with its summary and exit
    status 0, with everything it sent acknowledged, and the sequence numbers ``stored``
    (over every log) are 1..n with no gap."""
    seqs = sorted(stored)
    return {
        "edge_summary": summary.get("event") == "summary",
        "edge_exit_0": returncode == 0,
        "all_acked": summary.get("in_flight") == 0
        and summary.get("batches_acked", 0) >= summary.get("batches_sent", 1),
        "no_gap": seqs == list(range(1, len(seqs) + 1)),
    }


def finish(name: str, figures: dict[str, Any], **extra_checks: bool) -> dict[str, Any]:
    """The scenario's JSON line: passed when nothing was lost or applied twice and every
    check held (a failed check is named in ``failed_checks``)."""
    failed = list(figures.pop("failed_checks", []))
    failed += sorted(name for name, ok in extra_checks.items() if not ok)
    passed = (
        not failed and figures.get("acked_lost") == 0 and figures.get("duplicates_applied") == 0
    )
    return {"scenario": name, "passed": passed, **figures, "failed_checks": failed}


def skipped(name: str, reason: str) -> dict[str, Any]:
    return {
        "scenario": name, "passed": None, "skipped": reason,
        "acked_lost": None, "duplicates_applied": None,
    }  # fmt: skip


def failed(name: str, error: str) -> dict[str, Any]:
    """The line of a scenario that could not finish: what broke, in ``error``."""
    return {
        "scenario": name, "passed": False, "acked_lost": None,
        "duplicates_applied": None, "error": error,
    }  # fmt: skip
