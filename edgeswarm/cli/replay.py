"""`edgeswarm log export` (a recording of one edge) and `edgeswarm replay` (compare runs)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgeswarm.gateway.config import GatewayConfig

from .exits import ExitCode, Usage, exits_on_error, fail

_GATEWAY = GatewayConfig()


def export(
    out: Annotated[Path, typer.Argument(help="Recording to write (replaced if it exists).")],
    edge: Annotated[str, typer.Option("--edge", help="The edge whose observations to export.")],
    from_seq: Annotated[int, typer.Option("--from", min=0, help="First seq (default 0).")] = 0,
    to_seq: Annotated[
        int | None, typer.Option("--to", min=0, help="Last seq, inclusive (default: the end).")
    ] = None,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The gateway's data directory.")
    ] = _GATEWAY.data_dir,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Export one edge's observations from the gateway's durable log as a recording
    (one record per tick, msgpack arrays, zstd-compressed) that an edge replays with
    `--io replay:PATH`. Every payload is checked against its checksum; runs beside a
    live gateway. Progress goes to stderr once a second. Exit status: 0 written; 1 the
    log cannot be read or holds a damaged payload (the recording stops before it); 2 a
    wrong command line (no log in --data-dir).

    Examples:

        edgeswarm log export --data-dir /var/lib/edgeswarm --edge e1 e1.rec

        edgeswarm log export --edge e1 --from 100 --to 199 --json e1-100.rec
    """
    from edgeswarm.gateway.log.export import ExportReport, export_edge

    path = data_dir / "observations.db"
    if not path.exists():
        fail(
            f"{path}: no observation log here (is --data-dir a gateway's data directory?)",
            ExitCode.USAGE,
        )
    if to_seq is not None and to_seq < from_seq:
        fail(f"--to {to_seq} is before --from {from_seq}", ExitCode.USAGE)

    def progress(report: ExportReport) -> None:
        sys.stderr.write(f"exported {report.batches} batches, {report.ticks} ticks\n")

    with exits_on_error(f"log export {edge!r}"):
        report = export_edge(path, edge, out, from_seq=from_seq, to_seq=to_seq, progress=progress)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(report)))
    else:
        typer.echo(
            f"{out}: {report.ticks} ticks, {report.observations} observations from"
            f" {report.batches} batches (seq {report.first_seq}..{report.last_seq})"
        )
    if report.batches == 0:
        typer.echo(f"warning: no batches of {edge!r} in that range", err=True)


def replay(
    expected: Annotated[Path, typer.Argument(help="Action stream of the reference run.")],
    actual: Annotated[Path, typer.Argument(help="Action stream of the replayed run.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Compare two action streams (`edgeswarm edge --actions-out`) tick by tick by
    their digests, and say where they first differ: the tick and the first agent.

    A recorded run replayed with the same modules, models and seed (`edgeswarm edge
    --io replay:REC --actions-out replayed.act`) must give identical actions.
    Exit status: 0 identical, 1 they differ, 2 a file cannot be read.

    Examples:

        edgeswarm replay live.act replayed.act

        edgeswarm replay live.act replayed.act --json | jq .difference
    """
    from edgeswarm.edge.io.actions_file import compare_actions
    from edgeswarm.storage.recording import RecordingError

    with exits_on_error("replay"):
        try:
            result = compare_actions(expected, actual)
        except RecordingError as exc:  # a file argument that is no action stream
            raise Usage(str(exc)) from None
    difference = result.difference
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "identical": result.identical,
                    "ticks": result.ticks,
                    "difference": None if difference is None else dataclasses.asdict(difference),
                }
            )
        )
    elif difference is None:
        typer.echo(f"identical: {result.ticks} ticks")
    else:
        agent = "" if difference.agent_id is None else f", agent {difference.agent_id}"
        typer.echo(
            f"differ at tick {difference.tick}{agent} (after {result.ticks} identical ticks):"
            f" {difference.what}"
        )
    if difference is not None:
        raise typer.Exit(ExitCode.FAILURE)
