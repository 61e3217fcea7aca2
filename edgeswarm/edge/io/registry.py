"""From an ``--io`` address to the source and sink it names.

Addresses::

    sim                             the built-in flocking world (default)
    mqtt://HOST:PORT/PREFIX?...     MQTT 5 broker (mqtts:// for TLS): edgeswarm.edge.io.mqtt
    replay:PATH[?speed=recorded]    a recording from ``edgeswarm log export``
    NAME[:ARGUMENT]                 a plug-in of the entry-point group ``edgeswarm.io``

A plug-in is a distribution that declares, in its ``pyproject.toml``::

    [project.entry-points."edgeswarm.io"]
    serial = "my_package.serial_io:open_serial"

where ``open_serial(argument: str, context: IoContext) -> AgentIO``
(docs/io.md has a complete example). Built-in names cannot be replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

from .base import AgentIO, IoContext, IoError

__all__ = ["ENTRY_POINT_GROUP", "IoOpener", "available_kinds", "open_io", "split_address"]

ENTRY_POINT_GROUP = "edgeswarm.io"

IoOpener = Callable[[str, IoContext], AgentIO]
"""What an ``--io`` kind is: ``(argument, context) -> AgentIO``."""


def _builtin(kind: str) -> IoOpener | None:
    # imported on demand: the MQTT client is only loaded by an edge that uses it
    if kind == "sim":
        from .simulator import open_simulator

        return open_simulator
    if kind in ("mqtt", "mqtts"):
        from .mqtt import open_mqtt

        return open_mqtt
    if kind == "replay":
        from .replay import open_replay

        return open_replay
    return None


BUILTIN_KINDS = ("sim", "mqtt", "mqtts", "replay")


def split_address(address: str) -> tuple[str, str]:
    """``(kind, argument)`` of an ``--io`` address; URL kinds keep the whole URL."""
    if "://" in address:
        return address.split("://", 1)[0], address
    kind, _, argument = address.partition(":")
    return kind, argument


def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_kinds() -> list[str]:
    """Every kind ``--io`` accepts here: the built-ins, then installed plug-ins."""
    return [*BUILTIN_KINDS, *sorted(set(_plugins()) - set(BUILTIN_KINDS))]


def open_io(address: str, context: IoContext) -> AgentIO:
    """The source and sink ``address`` names. Raises :class:`IoError` (one line that
    names what is accepted) for an unknown kind or a plug-in that fails to load."""
    kind, argument = split_address(address)
    opener = _builtin(kind)
    if opener is None:
        entry = _plugins().get(kind)
        if entry is None:
            raise IoError(
                f"--io {address!r}: no source/sink kind {kind!r} (available: "
                f"{', '.join(available_kinds())}; plug-ins register in the entry-point "
                f"group {ENTRY_POINT_GROUP!r})"
            )
        try:
            opener = entry.load()
        except Exception as exc:  # a broken plug-in: say which, never a traceback
            raise IoError(
                f"--io {address!r}: plug-in {entry.value!r} failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    io = opener(argument, context)
    if not isinstance(io, AgentIO):
        raise IoError(f"--io {address!r}: {kind!r} returned {type(io).__name__}, not AgentIO")
    return io
