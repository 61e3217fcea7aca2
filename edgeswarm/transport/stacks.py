"""The QUIC libraries the adapter can drive, behind one small table.

Both ``aioquic`` (pure Python, the reference) and ``qh3`` (its API-compatible
fork with a Rust packet core) expose the same sans-I/O ``QuicConnection``:
datagrams in (``receive_datagram``), events out (``next_event``), datagrams
to send (``datagrams_to_send``) and a timer (``get_timer``/``handle_timer``).
The adapter only uses that public surface plus the names listed here, so a
stack is a module-level lookup, imported on first use: an edge without qh3
installed still runs on aioquic.

Private attribute used (pinned by ``tests/test_transport_quic.py``):
``QuicConnection._remote_max_datagram_frame_size``, the peer's transport
parameter, which neither library exposes publicly; without it
``send_datagram`` reports False and callers fall back to the stream.
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
    )


def remote_max_datagram_frame_size(quic: Any) -> int | None:
    """The peer's ``max_datagram_frame_size`` transport parameter (private attribute)."""
    value = getattr(quic, "_remote_max_datagram_frame_size", None)
    return value if isinstance(value, int) else None
