"""``edgeswarm log verify``: read a gateway's observation log back and check every byte."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgeswarm.gateway.config import GatewayConfig

from .exits import ExitCode, exits_on_error, fail

_GATEWAY = GatewayConfig()

log_app = typer.Typer(
    name="log",
    help="The gateway's durable observation log (observations.db and its segments).",
    no_args_is_help=True,
)


@log_app.command("verify")
def verify(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The gateway's data directory.")
    ] = _GATEWAY.data_dir,
    quick: Annotated[
        bool,
        typer.Option(help="PRAGMA quick_check instead of integrity_check (no index vs table)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check observations.db (SQLite integrity_check), every index row against its own
    checksum, and every payload in the segment files against its XXH3-64.

    Runs beside a live gateway (it only reads a snapshot). Progress goes to stderr once a
    second. Exit status: 0 nothing damaged; 1 damage found (each listed), or the index
    cannot be read at all; 2 --data-dir holds no observation log.

    Examples:

        edgeswarm log verify --data-dir /var/lib/edgeswarm

        edgeswarm log verify --data-dir /var/lib/edgeswarm --json | jq .problems
    """
    from edgeswarm.gateway.log import VerifyReport, verify_log

    path = data_dir / "observations.db"

    def progress(report: VerifyReport) -> None:
        sys.stderr.write(
            f"verified {report.rows} rows, {report.payload_bytes / 1e6:.1f} MB,"
            f" {report.problem_count} problems\n"
        )

    if not path.exists():
        fail(
            f"--data-dir: no observation log {path} (is it a gateway's data directory?)",
            ExitCode.USAGE,
        )
    with exits_on_error(f"log verify {path}"):
        try:
            report = verify_log(path, full=not quick, progress=progress)
        except sqlite3.Error as exc:
            fail(f"log verify {path}: cannot read the index ({exc})")
    if as_json:
        record = dataclasses.asdict(report)
        record["ok"] = report.ok
        typer.echo(json.dumps(record))
    else:
        typer.echo(
            f"{path}: {report.rows} rows, {report.payload_bytes} payload bytes checked in"
            f" {report.seconds:.1f} s; {report.unchecked_rows} rows older than row checksums"
        )
        for line in report.database:
            typer.echo(f"database: {line}")
        for problem in report.problems:
            where = f" (segment {problem.segment}, offset {problem.offset})"
            typer.echo(f"damaged: {problem.edge_id!r} seq {problem.seq}: {problem.what}{where}")
        typer.echo("ok" if report.ok else f"{report.problem_count} damaged rows or payloads")
    if not report.ok:
        raise typer.Exit(1)
