"""Peer identity at the gateway: who gets in, who is refused and why (real QUIC, real gateway)."""

from __future__ import annotations

import asyncio

import pytest

from edgeswarm.identity import KeyPair
from edgeswarm.transport import quic
from edgeswarm.wire import Auth, ErrorCode, Role, Welcome

from .conftest import RunningGateway
from .raw_peer import RawPeer, attempt, refusal

pytestmark = pytest.mark.integration


def test_enrolled_key_is_welcomed(gateway: RunningGateway) -> None:
    key = KeyPair.generate()
    gateway.enroll(key, "edge-a")
    peer = asyncio.run(attempt(gateway, key, "edge-a"))
    [welcome] = [f for f in peer.frames if isinstance(f, Welcome)]
    assert welcome.credit == 256  # the gateway's default --credit-window
    assert welcome.resume_seq == 0


def test_unknown_key_is_refused(gateway: RunningGateway) -> None:
    peer = asyncio.run(attempt(gateway, KeyPair.generate(), "stranger"))
    assert refusal(peer) is ErrorCode.UNKNOWN_PEER
    assert "peer refused" in gateway.log.read_text()


def test_forged_signature_is_refused(gateway: RunningGateway) -> None:
    key, impostor = KeyPair.generate(), KeyPair.generate()
    gateway.enroll(key, "edge-a")
    # The impostor claims edge-a's public key but can only sign with its own.
    forged = Auth(signature=impostor.sign(b"anything"))
    peer = asyncio.run(attempt(gateway, key, "edge-a", auth=forged))
    assert refusal(peer) is ErrorCode.AUTH_FAILED


def test_replayed_challenge_answer_is_refused(gateway: RunningGateway) -> None:
    key = KeyPair.generate()
    gateway.enroll(key, "edge-a")
    first = asyncio.run(attempt(gateway, key, "edge-a"))
    assert any(isinstance(f, Welcome) for f in first.frames)
    # An eavesdropper replays the AUTH it saw; the new session has a new nonce.
    _, _, auth = asyncio.run(_capture_auth(gateway, key))
    replay = asyncio.run(attempt(gateway, key, "edge-a", auth=auth))
    assert refusal(replay) is ErrorCode.AUTH_FAILED


async def _capture_auth(gateway: RunningGateway, key: KeyPair):
    peer = RawPeer()
    async with quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peer):
        result = await peer.handshake(key, "edge-a")
        await peer.wait_for(Welcome)
    assert result is not None
    return result


def test_wrong_role_is_refused(gateway: RunningGateway) -> None:
    key = KeyPair.generate()
    gateway.enroll(key, "edge-a", Role.EDGE)
    peer = asyncio.run(attempt(gateway, key, "edge-a", role=Role.ADMIN))
    assert refusal(peer) is ErrorCode.ROLE_NOT_ALLOWED


def test_key_of_another_peer_id_is_refused(gateway: RunningGateway) -> None:
    key = KeyPair.generate()
    gateway.enroll(key, "edge-a")
    peer = asyncio.run(attempt(gateway, key, "edge-b"))
    assert refusal(peer) is ErrorCode.AUTH_FAILED


def test_join_token_enrolls_once(gateway: RunningGateway) -> None:
    token = gateway.edge_token(uses=1)
    key = KeyPair.generate()
    peer = asyncio.run(attempt(gateway, key, "edge-new", join_token=token))
    assert any(isinstance(f, Welcome) for f in peer.frames)
    with gateway.registry() as registry:
        enrolled = registry.peer_by_id("edge-new")
    assert enrolled is not None
    assert enrolled.public_key == key.public_key
    assert enrolled.via.startswith("token:")
    # The key is enrolled now: it needs no token any more.
    assert any(
        isinstance(f, Welcome) for f in asyncio.run(attempt(gateway, key, "edge-new")).frames
    )
    # The token is used up: another key cannot ride on it.
    again = asyncio.run(attempt(gateway, KeyPair.generate(), "edge-other", join_token=token))
    assert refusal(again) is ErrorCode.BAD_TOKEN


def test_bad_and_wrong_role_tokens_are_refused(gateway: RunningGateway) -> None:
    bogus = asyncio.run(attempt(gateway, KeyPair.generate(), "e1", join_token="es1.nope.nope"))
    assert refusal(bogus) is ErrorCode.BAD_TOKEN
    edge_token = gateway.edge_token()
    admin_try = asyncio.run(
        attempt(gateway, KeyPair.generate(), "ops", role=Role.ADMIN, join_token=edge_token)
    )
    assert refusal(admin_try) is ErrorCode.BAD_TOKEN


def test_token_enrollment_without_a_valid_signature_enrolls_nothing(
    gateway: RunningGateway,
) -> None:
    token = gateway.edge_token()
    key = KeyPair.generate()
    forged = Auth(signature=bytes(64))
    peer = asyncio.run(attempt(gateway, key, "edge-x", join_token=token, auth=forged))
    assert refusal(peer) is ErrorCode.AUTH_FAILED
    with gateway.registry() as registry:
        assert registry.peer_by_id("edge-x") is None
    # The token was not consumed by the failed attempt.
    ok = asyncio.run(attempt(gateway, key, "edge-x", join_token=token))
    assert any(isinstance(f, Welcome) for f in ok.frames)
