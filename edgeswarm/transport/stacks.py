"""The QUIC libraries the adapter can drive, behind one small table.

Both ``aioquic`` (pure Python, the reference) and ``qh3`` (its API-compatible
fork with a Rust packet core) expose the same sans-I/O ``QuicConnection``:
datagrams in (``receive_datagram``), events out (``next_event``), datagrams
to send (``datagrams_to_send``) and a timer (``get_timer``/``handle_timer``).
The adapter only uses that public surface plus the names listed here, so a
stack is a module-level lookup, imported on first use: an edge without qh3
installed still runs on aioquic.

Private attributes used (pinned by ``tests/test_transport_quic.py`` and
``tests/test_transport_packets.py``):
``QuicConnection._remote_max_datagram_frame_size``, the peer's transport
parameter, which neither library exposes publicly; without it
``send_datagram`` reports False and callers fall back to the stream. And
qh3's ``QuicConnection._core.active_path``, whose last field is the datagram
size the connection sends now (path MTU probing moves it between 1200 bytes and
``max_datagram_size``): a DATAGRAM frame that does not fit it makes qh3's
packet builder fail and the connection drop, so ``send_datagram`` measures
against it (:func:`path_datagram_size`).

Private parts replaced (pinned by ``tests/test_transport_packets.py``): qh3
2.1's ``QuicConnection.datagrams_to_send`` calls ``self._log_packets`` for
every packet it sends, which parses the packet's header again to log it even
when no ``quic_logger`` is set (~11 % of a sending client's CPU), and wraps
each ``_core.poll_transmit`` in two more Python calls. On exactly the qh3
versions in :data:`QH3_SILENT_LOG_VERSIONS`, and only for a connection
without a logger (:attr:`QuicStack.packet_log_skippable`),
:func:`silence_packet_log` replaces ``_log_packets`` on the connection object
by one that does nothing, and :func:`datagrams_to_send` polls the packet core
itself, as ``datagrams_to_send`` does minus its logging.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any, Literal

StackName = Literal["aioquic", "qh3"]
STACKS: tuple[StackName, ...] = ("aioquic", "qh3")
"""Every QUIC library the adapter can drive."""
DEFAULT_STACK: StackName = "qh3"
"""The stack that won ``scripts/bench transport`` and passes every test."""


class EventKind(Enum):
    """The QUIC events the adapter acts on."""

    STREAM_DATA = 1
    STREAM_RESET = 2
    DATAGRAM = 3
    HANDSHAKE_COMPLETED = 4
    TERMINATED = 5
    CID_ISSUED = 6
    CID_RETIRED = 7


@dataclass(frozen=True)
class QuicStack:
    """One QUIC library: its configuration and connection classes and events."""

    name: StackName
    """``"aioquic"`` or ``"qh3"``."""
    configuration_class: Any
    """``quic.configuration.QuicConfiguration`` of the library."""
    connection_class: Any
    """``quic.connection.QuicConnection`` of the library."""
    event_kinds: dict[type, EventKind]
    """Event class of the library -> what it means to the adapter."""
    encode_version_negotiation: Any
    """``quic.packet.encode_quic_version_negotiation`` of the library."""
    encode_retry: Any
    """``quic.packet.encode_quic_retry`` of the library."""
    pull_header: Any
    """``quic.packet.pull_quic_header`` of the library (reads a ``buffer_class``)."""
    buffer_class: Any
    """The library's ``Buffer`` (``pull_header`` reads one)."""
    batched_receive: bool
    """Whether ``QuicConnection.receive_many_datagrams`` exists (qh3)."""
    gro_receive: bool
    """Whether ``QuicConnection.receive_gro_buffer`` exists (qh3): the library splits
    a UDP GRO buffer itself."""
    packet_log_skippable: bool = False
    """Whether the library's per-packet log of sent packets may be skipped on a connection
    without a logger (qh3 of a version in :data:`QH3_SILENT_LOG_VERSIONS`)."""
    send_backlog: bool = False
    """Whether ``QuicConnection.get_send_buffer_size(stream_id)`` says how many bytes of a
    stream wait to be sent (qh3)."""
    pmtu_probing: bool = False
    """Whether the library finds the path's datagram size itself (qh3's
    ``probe_datagram_size``): probes up to ``max_datagram_size``, falls back when big
    packets are lost (RFC 8899 style)."""


QH3_SILENT_LOG_VERSIONS = frozenset({"2.1.0"})
"""qh3 releases whose ``datagrams_to_send`` was read and found to log each sent packet through
``_log_packets`` and nothing else (see the module docstring); another version keeps its log."""


def _no_packet_log(event: str, data: bytes) -> None:
    """Stands in for ``QuicConnection._log_packets`` on a connection without a logger."""


def silence_packet_log(stack: QuicStack, quic: Any) -> bool:
    """Skip the per-packet log of ``quic`` (a new connection) when it has no logger and the
    stack allows it; whether it did."""
    if not stack.packet_log_skippable or getattr(quic, "_quic_logger", None) is not None:
        return False
    quic._log_packets = _no_packet_log
    return True


def datagrams_to_send(stack: QuicStack, quic: Any, now: float) -> list[tuple[bytes, Any]]:
    """``quic.datagrams_to_send(now)``; on a connection whose packet log is silenced, the
    same loop over qh3's packet core without the per-packet logging calls."""
    core = getattr(quic, "_core", None)
    if core is None or not stack.packet_log_skippable or "_log_packets" not in vars(quic):
        return list(quic.datagrams_to_send(now=now))
    datagrams = []
    poll = core.poll_transmit
    try:
        while (transmit := poll(now)) is not None:
            datagrams.append((transmit[0], transmit[1]))
    except RuntimeError as error:  # what QuicConnection._call_core turns into its own error
        if datagrams:
            return datagrams  # these were built: send them; the error comes back next time
        raise ConnectionError(f"QUIC packet core: {error}") from error
    return datagrams


@cache
def load_stack(name: str) -> QuicStack:
    """Import the library called ``name``; ValueError for an unknown name."""
    if name not in STACKS:
        raise ValueError(f"unknown QUIC stack {name!r}; choose one of {', '.join(STACKS)}")
    configuration = importlib.import_module(f"{name}.quic.configuration")
    connection = importlib.import_module(f"{name}.quic.connection")
    events = importlib.import_module(f"{name}.quic.events")
    packet = importlib.import_module(f"{name}.quic.packet")
    buffer = importlib.import_module("qh3._hazmat" if name == "qh3" else "aioquic.buffer")
    kinds = {
        events.StreamDataReceived: EventKind.STREAM_DATA,
        events.StreamReset: EventKind.STREAM_RESET,
        events.DatagramFrameReceived: EventKind.DATAGRAM,
        events.HandshakeCompleted: EventKind.HANDSHAKE_COMPLETED,
        events.ConnectionTerminated: EventKind.TERMINATED,
        events.ConnectionIdIssued: EventKind.CID_ISSUED,
        events.ConnectionIdRetired: EventKind.CID_RETIRED,
    }
    return QuicStack(
        name=name,  # checked against STACKS above
        configuration_class=configuration.QuicConfiguration,
        connection_class=connection.QuicConnection,
        event_kinds=kinds,
        encode_version_negotiation=packet.encode_quic_version_negotiation,
        encode_retry=packet.encode_quic_retry,
        pull_header=packet.pull_quic_header,
        buffer_class=buffer.Buffer,
        batched_receive=hasattr(connection.QuicConnection, "receive_many_datagrams"),
        gro_receive=hasattr(connection.QuicConnection, "receive_gro_buffer"),
        packet_log_skippable=name == "qh3"
        and importlib.import_module("qh3").__version__ in QH3_SILENT_LOG_VERSIONS
        and callable(getattr(connection.QuicConnection, "_log_packets", None)),
        send_backlog=hasattr(connection.QuicConnection, "get_send_buffer_size"),
        pmtu_probing=hasattr(configuration.QuicConfiguration, "probe_datagram_size"),
    )


def remote_max_datagram_frame_size(quic: Any) -> int | None:
    """The peer's ``max_datagram_frame_size`` transport parameter (private attribute)."""
    value = getattr(quic, "_remote_max_datagram_frame_size", None)
    return value if isinstance(value, int) else None


def path_datagram_size(quic: Any) -> int | None:
    """The datagram size ``quic`` builds packets for now, where the library probes the path
    (qh3: the last field of the packet core's ``active_path``, private); None elsewhere."""
    core = getattr(quic, "_core", None)
    try:
        size = core.active_path[-1] if core is not None else None
    except (AttributeError, IndexError, TypeError, RuntimeError):
        return None
    return size if isinstance(size, int) and size > 0 else None
