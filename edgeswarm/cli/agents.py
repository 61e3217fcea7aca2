"""``edgeswarm agents``: the group of agent commands.

It holds the module commands (``build``, ``sign``, ``publish``, ``modules``,
``history``, ``trust``, ``push``, ``pull``: :mod:`.modules`) and is where the
commands for swarm-owned agents (``add``, ``list``, ``show``) belong too.
"""

from __future__ import annotations

import typer

from .modules import register_module_commands

agents_app = typer.Typer(
    name="agents",
    help="Wasm agent modules: build, sign, publish, push/pull to OCI, history.",
    no_args_is_help=True,
)
register_module_commands(agents_app)
