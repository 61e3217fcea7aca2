"""The session state machine and the frame decoder under hypothesis (bounded; the longer
coverage-guided run is scripts/fuzz): any bytes, or valid frames in any order, in any
state, fed to a session never raise, a violation ends it, and a closed session says
nothing more. The targets are shared with scripts/fuzz (tests/fuzz_targets.py)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeswarm.wire import encode_frame
from tests import fuzz_targets
from tests.test_wire_codec import frames

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _as_chunks(pieces: list[bytes]) -> bytes:
    """The targets' input format: each chunk prefixed by its length byte (<= 255)."""
    out = bytearray()
    for piece in pieces:
        for at in range(0, max(len(piece), 1), 255):
            chunk = piece[at : at + 255]
            out += bytes([len(chunk)]) + chunk
    return bytes(out)


pieces = st.lists(st.one_of(frames.map(encode_frame), st.binary(max_size=64)), max_size=8)


@given(start=st.integers(0, len(fuzz_targets.STARTS) - 1), pieces=pieces)
@FUZZ
def test_sessions_in_any_state_survive_any_frames_and_bytes(
    start: int, pieces: list[bytes]
) -> None:
    fuzz_targets.session(bytes([start]) + _as_chunks(pieces))


@given(st.binary(max_size=2048))
@FUZZ
def test_random_input_to_the_session_and_decoder_targets(data: bytes) -> None:
    fuzz_targets.session(data)
    fuzz_targets.decoder(data)


def test_the_targets_see_violations_as_the_session_table_says() -> None:
    """Rule 8 (wire/states.py): before WELCOME one violation ends a server's session;
    after it a recoverable one is answered with ERROR and reported, and the session goes
    on. The fuzz targets only require what holds in both."""
    garbage = b"\x00\x00\x00\x05garbage"
    fresh = fuzz_targets.start_session("server")
    fresh.receive_data(garbage, 1.0)
    assert fresh.closed
    ready = fuzz_targets.start_session("server_ready")
    ready.receive_data(garbage, 1.0)
    assert not ready.closed
    assert type(ready.next_event()).__name__ == "ProtocolViolation"
    assert ready.data_to_send()  # the ERROR frame
    fuzz_targets.session(bytes([0, 11]) + garbage + bytes([1]) + b"x")
