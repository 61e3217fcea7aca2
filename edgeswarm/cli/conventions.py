"""What every ``edgeswarm`` option has without each command spelling it out.

- An environment variable: ``EDGESWARM_<COMMAND>_<OPTION>`` (``--metrics-port`` of
  ``edgeswarm edge`` is ``EDGESWARM_EDGE_METRICS_PORT``; of ``edgeswarm state
  watch`` ``--count`` is ``EDGESWARM_STATE_WATCH_COUNT``), named after the flag,
  shown in ``--help``. An option that names its own variable keeps it (shared
  ones: ``EDGESWARM_CONTEXT``, ``EDGESWARM_JOIN_TOKEN``, ``EDGESWARM_QUIC``,
  ``EDGESWARM_CACHE_DIR``). A flag takes ``1``/``true``/``yes`` or
  ``0``/``false``/``no``; a repeatable option takes values separated by spaces.
- A flag shows no value type in ``--help`` (it takes none: ``--json true`` is the
  flag and an argument ``true``).

:func:`apply` walks the command tree once, before the command line is parsed
(``app.run``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ENV_PREFIX", "apply", "env_name"]

ENV_PREFIX = "EDGESWARM"


def env_name(path: list[str], flag: str) -> str:
    """``EDGESWARM_<path...>_<flag>`` in upper case, dashes as underscores."""
    parts = [ENV_PREFIX, *path, flag.lstrip("-")]
    return "_".join(part.upper().replace("-", "_") for part in parts)


def apply(root: Any) -> None:
    """Name the environment variable of every option below the root click command that
    has none, and drop the value type of every flag in help (the root's too)."""
    _apply(root, None)


def _apply(command: Any, path: list[str] | None) -> None:
    for param in command.params:
        if getattr(param, "param_type_name", None) != "option":
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""  # the rich help shows "<bool>" otherwise
        if path is None or param.is_eager or param.hidden or param.envvar is not None:
            continue  # the root's own; --help and friends; options with a shared variable
        flag = max(param.opts, key=len)
        param.envvar = env_name(path, flag)
        param.show_envvar = True
    original = command.get_help_option

    def help_option(ctx: Any, original: Any = original) -> Any:
        option = original(ctx)  # made per context, never among command.params
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for name, sub in getattr(command, "commands", {}).items():
        _apply(sub, [*(path or []), name])
