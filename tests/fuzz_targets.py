"""Fuzz targets shared by the bounded hypothesis tests (tests/test_fuzz_session.py, in
scripts/test) and the longer coverage-guided run (scripts/fuzz, atheris).

Each target takes bytes and raises only AssertionError when a promise breaks: the frame
decoder raises nothing but RemoteProtocolError; a session fed anything, in any state,
never raises, ends closed after a violation, and says nothing more once closed.
"""

from __future__ import annotations

import contextlib

from edgeswarm.wire import RemoteProtocolError, Session, SessionConfig
from edgeswarm.wire.codec import decode_payload
from edgeswarm.wire.framing import FrameReader

STARTS = ("server", "client", "server_ready", "client_ready")
"""Where a session target starts: fresh either side, or after a full handshake."""


def decoder(data: bytes) -> None:
    """Any payload: a frame, or a RemoteProtocolError (before and after AUTH limits)."""
    for preauth in (True, False):
        with contextlib.suppress(RemoteProtocolError):
            decode_payload(data, preauth=preauth)
    reader = FrameReader(1 << 16)
    reader.feed(data)
    with contextlib.suppress(RemoteProtocolError):
        for _ in range(len(data) + 1):  # bounded: each payload takes at least a byte
            if reader.next_payload() is None:
                break


def start_session(start: str) -> Session:
    from tests.test_wire_session import connected

    if start == "server":
        return Session(SessionConfig(is_client=False), now=0.0)
    if start == "client":
        return Session(SessionConfig(is_client=True), now=0.0)
    client, server = connected()
    return server if start == "server_ready" else client


def session(data: bytes) -> None:
    """Byte 0 picks the start (:data:`STARTS`); then chunks, each prefixed by its length
    byte, are fed to the session as received data, one millisecond apart."""
    if not data:
        return
    subject = start_session(STARTS[data[0] % len(STARTS)])
    while subject.next_event() is not None:
        pass
    at, now, was_closed = 1, 0.0, False
    while at < len(data):
        size = data[at]
        chunk, at = data[at + 1 : at + 1 + size], at + 1 + size
        now += 0.001
        subject.receive_data(chunk, now)
        subject.handle_timer(now)
        if was_closed:
            assert subject.next_event() is None, "an event after the session closed"
            assert subject.data_to_send() == b"", "bytes sent after the session closed"
        while subject.next_event() is not None:
            pass
        subject.data_to_send()
        assert not (was_closed and not subject.closed), "a closed session opened again"
        was_closed = subject.closed
