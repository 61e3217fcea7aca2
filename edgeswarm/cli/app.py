"""``edgeswarm``: run a gateway, an edge or an inference node; ask a gateway; manage keys.

Exit statuses and error lines: ``exits.py``. Environment variables of the
options: ``conventions.py``. Contexts (saved gateways): ``contexts.py``.
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeswarm import __version__

from . import conventions
from .agents import agents_app
from .context_commands import context_app
from .edge import edge
from .edges import edges_app, shards
from .exits import ExitCode, debug_enabled, exits_on_error, fail, set_debug
from .gateway import gateway
from .infer import infer
from .keys import keys_app
from .log import log_app
from .replay import export, replay
from .state import state_app
from .status import status

app = typer.Typer(
    name="edgeswarm",
    help="QUIC edge agent runtime with WebAssembly agents.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

app.add_typer(agents_app)
app.add_typer(context_app)
app.add_typer(keys_app)
app.add_typer(log_app)
app.add_typer(state_app)
app.add_typer(agents_app)
app.add_typer(edges_app)
app.command()(shards)
app.command()(gateway)
app.command()(edge)
app.command()(infer)
app.command()(status)
app.command()(replay)
log_app.command("export")(export)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar="EDGESWARM_DEBUG",
            help="Show the Python traceback of an error (nothing else does).",
        ),
    ] = False,
) -> None:
    """QUIC edge agent runtime with WebAssembly agents.

    Exit status of every command: 0 done, 1 it could not do its job, 2 a wrong command
    line, 3 the gateway refused the key or token for good (docs/operations.md).
    Every option can also be set by an environment variable, shown in each --help.

    Examples:

        edgeswarm gateway --data-dir /var/lib/edgeswarm

        edgeswarm status --context prod

        edgeswarm --install-completion bash
    """
    set_debug(debug)


def _versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    record: dict[str, Any] = {"edgeswarm": __version__, "python": platform.python_version()}
    for package in ("wasmtime", "qh3", "aioquic", "pycrdt", "onnxruntime", "ai-edge-litert"):
        try:
            record[package] = installed(package)
        except PackageNotFoundError:
            record[package] = None
    return record


@app.command()
def version(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the version of edgeswarm and of the libraries it runs on.

    Examples:

        edgeswarm version

        edgeswarm version --json | jq -r .edgeswarm
    """
    record = _versions()
    if as_json:
        typer.echo(json.dumps(record))
        return
    for name, value in record.items():
        typer.echo(f"{name} {value or 'not installed'}")


@app.command()
def demo(
    duration: Annotated[float, typer.Option(min=0.5, help="Seconds to run.")] = 15.0,
    edges: Annotated[int, typer.Option(min=1, help="Edge processes.")] = 2,
    agents: Annotated[int, typer.Option(min=1, help="Agents per edge.")] = 10_000,
    tick_hz: Annotated[float, typer.Option(min=0, help="Ticks/s per edge; 0 = max.")] = 10.0,
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo's gateway keeps its files and logs.")
    ] = Path("var/demo"),
    as_json: Annotated[bool, typer.Option("--json", help="End with a JSON summary line.")] = False,
    io: Annotated[
        str,
        typer.Option(
            "--io", help="sim (built-in world) or mqtt (sensors over a local Mosquitto broker)."
        ),
    ] = "sim",
    placement: Annotated[
        bool,
        typer.Option(
            "--placement",
            help="The gateway places the swarm's agents on the edges; edge-1 is drained"
            " half-way (needs --edges 2 or more, --io sim).",
        ),
    ] = False,
) -> None:
    """Run a local swarm on loopback (gateway, inference node, edges) with live progress.

    Ctrl-C stops every process cleanly and still prints the summary. Exit status 1 when
    observations stayed unacknowledged or a process failed. With --io mqtt the demo also
    starts Mosquitto (Debian package mosquitto) and one sensor simulator per edge
    publishing over MQTT.

    Examples:

        edgeswarm demo

        edgeswarm demo --duration 60 --edges 4 --agents 20000 --json | tail -1 | jq .

        edgeswarm demo --io mqtt --edges 2 --agents 2000 --duration 20

        edgeswarm demo --placement --edges 3 --duration 30
    """
    from .demo import DemoPlan, run_demo

    if io not in ("sim", "mqtt"):
        fail(f"--io {io!r}: the demo runs sim or mqtt", ExitCode.USAGE)
    if placement and (io != "sim" or edges < 2):
        fail("--placement needs --io sim and at least 2 --edges", ExitCode.USAGE)
    plan = DemoPlan(
        duration_s=duration,
        edges=edges,
        agents=agents,
        tick_hz=tick_hz,
        data_dir=data_dir,
        io=io,
        placement=placement,
    )
    with exits_on_error("demo"):
        summary = asyncio.run(run_demo(plan, live=not as_json))
    if as_json:
        typer.echo(json.dumps(summary))
    if summary["observations_acked"] != summary["observations_sent"] or summary["failed"]:
        raise typer.Exit(ExitCode.FAILURE)


def run(args: list[str] | None = None) -> int:
    """Run the command line ``args`` (``sys.argv[1:]`` when None); returns its exit status.

    Usage errors become one ``error:`` line (status 2) instead of click's box; an error
    nobody foresaw becomes one ``error: internal error`` line (status 1) unless
    ``--debug`` asks for its traceback.
    """
    command = typer.main.get_command(app)
    conventions.apply(command)
    try:
        code = command.main(args=args, prog_name="edgeswarm", standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        exit_code = int(getattr(exc, "exit_code", ExitCode.USAGE))
        if type(exc).__name__ == "NoArgsIsHelpError":  # `edgeswarm keys`: show its help
            typer.echo(exc.format_message(), err=True)
            return exit_code
        context = getattr(exc, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        return exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("error: interrupted", err=True)
        return 130
    except Exception as exc:
        if debug_enabled():
            raise
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        typer.echo(
            f"error: internal error ({what}); run again with --debug for the traceback"
            " and report it",
            err=True,
        )
        return ExitCode.FAILURE
    return code if isinstance(code, int) else ExitCode.OK


def main() -> None:
    sys.exit(run())
