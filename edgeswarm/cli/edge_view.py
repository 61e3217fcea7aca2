"""``edgeswarm edge`` on a terminal: a live table instead of JSON lines.

The edge hands every progress record and its summary to an output; piped, that
is one JSON line each (``runner.emit``); on a terminal it is :class:`LiveView`,
a rich table redrawn in place, then the summary as a table (``--json`` keeps
the JSON lines on a terminal too).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from edgeswarm.resource import Resource

__all__ = ["LiveView"]


def _mb(value: int) -> str:
    return f"{value / 1e6:,.1f} MB"


def _rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    connected = "[green]yes[/green]" if record.get("connected") else "[red]no[/red]"
    rows = [
        ("gateway connected", connected),
        ("tick", f"{record.get('tick', 0):,}"),
        ("agents", f"{record.get('agents', 0):,}"),
        ("observations sent", f"{record.get('observations_sent', 0):,}"),
        ("observations acked", f"{record.get('observations_acked', 0):,}"),
        ("batches in flight (spooled)", f"{record.get('in_flight', 0):,}"),
        ("spool", _mb(record.get("spooled_bytes", 0))),
        ("sessions with the gateway", str(record.get("connects", 0))),
        (
            "ack p50 / p99",
            f"{record.get('ack_p50_ms', 0):.2f} / {record.get('ack_p99_ms', 0):.2f} ms",
        ),
    ]
    if record.get("batches_carried_over"):
        rows.append(("carried over from the last run", f"{record['batches_carried_over']:,}"))
    for name, label in (
        ("dropped_batches", "batches dropped (spool full)"),
        ("quarantined_batches", "batches quarantined"),
        ("policies_quarantined", "policies quarantined"),
    ):
        if record.get(name):
            rows.append((label, f"[yellow]{record[name]:,}[/yellow]"))
    if record.get("heavy_requests"):
        rows.append(("heavy requests", f"{record['heavy_requests']:,}"))
    return rows


def render(record: dict[str, Any]) -> Table:
    """One record (``progress`` or ``summary``) as a two-column table."""
    final = record.get("event") == "summary"
    title = f"edge {record.get('edge_id', '?')} — {record.get('elapsed_s', 0):.1f} s"
    table = Table(title=title + (" — stopped" if final else ""), show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in _rows(record):
        table.add_row(what, value)
    faults = record.get("policy_faults") or {}
    for name, count in faults.items():
        table.add_row(f"policy fault {name}", f"[yellow]{count}[/yellow]")
    return table


class LiveView(Resource):
    """An ``output`` for :class:`~edgeswarm.edge.runner.EdgeRunner` that draws on a
    terminal; ``close()`` ends the live display (the summary stays on screen)."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console()
        self._live: Live | None = None

    def __call__(self, record: dict[str, Any]) -> None:
        if self._live is None:
            self._live = Live(console=self._console, auto_refresh=False, transient=False)
            self._live.start()
        self._live.update(render(record), refresh=True)
        if record.get("event") == "summary":
            self.close()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
