"""Authenticated peers that misbehave: one peer never hurts another, nor writes what it
does not own (real gateway process, real QUIC on loopback)."""

from __future__ import annotations

import asyncio
import struct

import msgpack  # type: ignore[import-untyped]
import numpy as np
import pytest

from edgeswarm.identity import KeyPair, public_key_text
from edgeswarm.transport import quic
from edgeswarm.wire import (
    FEATURE_ACK_THROUGH,
    PROTOCOL_VERSION,
    Ack,
    Auth,
    Bye,
    Challenge,
    Error,
    ErrorCode,
    Hello,
    ObservationBatch,
    Role,
    StatusRequest,
    Welcome,
    auth_message,
    encode_frame,
    encode_payload,
)

from .conftest import RunningGateway, edgeswarm_command
from .raw_peer import RawPeer

pytestmark = pytest.mark.integration


def batch_frame(seq: int, tick: int | None = None) -> bytes:
    """An OBS_BATCH of 10 agents; ``seq``/``tick`` may be any uint64 (crafted bytes)."""
    body = msgpack.unpackb(
        encode_payload(
            ObservationBatch(
                seq=1,
                tick=1,
                agent_ids=np.arange(10, dtype=np.uint32),
                observations=np.zeros((10, 4), np.float32),
                rewards=np.zeros(10, np.float32),
            )
        ),
        raw=False,
    )
    body["seq"], body["tick"] = seq, seq if tick is None else tick
    payload: bytes = msgpack.packb(body, use_bin_type=True)
    return struct.pack(">I", len(payload)) + payload


async def wait_until(peer: RawPeer, predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            peer.changed.clear()
            await peer.changed.wait()


def acked_through(peer: RawPeer) -> int:
    return max((f.seq for f in peer.frames if isinstance(f, Ack)), default=0)


async def _bad_values_beside_a_good_edge(gateway: RunningGateway, rounds: int) -> None:
    good, bad = RawPeer(), RawPeer()
    good_key, bad_key = KeyPair.generate(), KeyPair.generate()
    gateway.enroll(good_key, "good-edge")
    gateway.enroll(bad_key, "bad-edge")
    async with (
        quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=good),
        quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=bad),
    ):
        await good.handshake(good_key, "good-edge", features=(FEATURE_ACK_THROUGH,))
        await bad.handshake(bad_key, "bad-edge", features=(FEATURE_ACK_THROUGH,))
        await good.wait_for(Welcome)
        await bad.wait_for(Welcome)
        for i in range(rounds):
            # The same turn of the gateway's loop gets both: one commit group at most.
            bad.send(batch_frame(2**63 + i) if i % 2 else batch_frame(i + 1, tick=2**64 - 1))
            good.send(batch_frame(i + 1))
            bad.send(batch_frame(i + 1, tick=i))  # a valid batch after the bad one
            await wait_until(good, lambda i=i: acked_through(good) == i + 1)
            await wait_until(bad, lambda i=i: acked_through(bad) == i + 1)
        assert not any(isinstance(f, Bye) for f in good.frames + bad.frames)
        errors = [f for f in bad.frames if isinstance(f, Error)]
        assert len(errors) == rounds
        assert {e.code for e in errors} == {ErrorCode.MALFORMED_FRAME}
        assert not any(isinstance(f, Error) for f in good.frames)


def test_out_of_range_seq_or_tick_fails_alone(gateway: RunningGateway) -> None:
    """seq or tick >= 2**63 (the store's integers are signed): an ERROR to the sender,
    its session and every other edge's go on, and nothing else fails with it."""
    asyncio.run(_bad_values_beside_a_good_edge(gateway, rounds=20))
    assert gateway.process.poll() is None
    log = gateway.log.read_text()
    assert "durable log failed" not in log
    assert "too large" not in log


async def _status_as(gateway: RunningGateway, role: Role) -> RawPeer:
    peer, key = RawPeer(), KeyPair.generate()
    gateway.enroll(key, f"a-{role.value}", role)
    async with quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peer):
        await peer.handshake(key, f"a-{role.value}", role=role)
        await peer.wait_for(Welcome)
        peer.send(encode_frame(StatusRequest()))
        await peer.wait_for(Error)
    return peer


@pytest.mark.parametrize("role", [Role.INFERENCE, Role.GATEWAY])
def test_status_is_refused_to_inference_and_gateway_roles(
    gateway: RunningGateway, role: Role
) -> None:
    peer = asyncio.run(_status_as(gateway, role))
    [error] = [f for f in peer.frames if isinstance(f, Error)]
    assert error.code == ErrorCode.UNEXPECTED_FRAME
    assert not any(type(f).__name__ == "Status" for f in peer.frames)


async def _race_for_one_id(
    gateway: RunningGateway, token: str, keys: tuple[KeyPair, KeyPair]
) -> tuple[RawPeer, RawPeer]:
    """Two new keys claim the same new id with one multi-use token, challenged together."""
    first, second = RawPeer(), RawPeer()
    async with (
        quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=first),
        quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=second),
    ):
        hellos = []
        for peer, key in zip((first, second), keys, strict=True):
            hello = Hello(
                version=PROTOCOL_VERSION,
                role=Role.EDGE,
                peer_id="contested",
                public_key=key.public_key,
                join_token=token,
            )
            peer.send(encode_frame(hello))
            hellos.append(hello)
        challenges = [await peer.wait_for(Challenge) for peer in (first, second)]
        for peer, key, hello, challenge in zip(
            (first, second), keys, hellos, challenges, strict=True
        ):
            message = auth_message(
                nonce=challenge.nonce, gateway_id=challenge.gateway_id, hello=hello
            )
            peer.send(encode_frame(Auth(signature=key.sign(message))))
        for peer in (first, second):
            await peer.wait_for(Welcome | Bye)
    return first, second


def test_racing_enrollments_of_one_id_admit_one_key(gateway: RunningGateway) -> None:
    """Both were challenged while the id was free: the enrollment decided at AUTH, in
    one transaction, admits the first and refuses the second with AUTH_FAILED."""
    keys = KeyPair.generate(), KeyPair.generate()
    first, second = asyncio.run(_race_for_one_id(gateway, gateway.edge_token(uses=5), keys))
    outcomes = [
        "welcome" if any(isinstance(f, Welcome) for f in p.frames) else "refused"
        for p in (first, second)
    ]
    assert sorted(outcomes) == ["refused", "welcome"]
    loser = (first, second)[outcomes.index("refused")]
    [error] = [f for f in loser.frames if isinstance(f, Error)]
    assert error.code == ErrorCode.AUTH_FAILED
    with gateway.registry() as registry:
        [enrolled] = [p for p in registry.peers() if p.peer_id == "contested"]
    assert enrolled.public_key == keys[outcomes.index("welcome")].public_key
    assert enrolled.via.startswith("token:")


async def _hello_then_operator_adds(gateway: RunningGateway, operator_key: KeyPair) -> RawPeer:
    peer, key = RawPeer(), KeyPair.generate()
    async with quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peer):
        hello = Hello(
            version=PROTOCOL_VERSION,
            role=Role.EDGE,
            peer_id="claimed",
            public_key=key.public_key,
            join_token=gateway.edge_token(),
        )
        peer.send(encode_frame(hello))
        challenge = await peer.wait_for(Challenge)
        # Meanwhile the operator enrolls another key under that id (the real CLI).
        done = await asyncio.create_subprocess_exec(
            *edgeswarm_command(
                "keys",
                "add",
                "--data-dir",
                str(gateway.data_dir),
                "--role",
                "edge",
                "--peer-id",
                "claimed",
                "--public-key",
                public_key_text(operator_key.public_key),
            ),
            stdout=asyncio.subprocess.DEVNULL,
        )
        assert await done.wait() == 0
        message = auth_message(nonce=challenge.nonce, gateway_id=challenge.gateway_id, hello=hello)
        peer.send(encode_frame(Auth(signature=key.sign(message))))
        await peer.wait_for(Welcome | Bye)
    return peer


def test_operator_keys_add_wins_over_a_pending_hello(gateway: RunningGateway) -> None:
    operator_key = KeyPair.generate()
    peer = asyncio.run(_hello_then_operator_adds(gateway, operator_key))
    assert not any(isinstance(f, Welcome) for f in peer.frames)
    [error] = [f for f in peer.frames if isinstance(f, Error)]
    assert error.code == ErrorCode.AUTH_FAILED
    with gateway.registry() as registry:
        enrolled = registry.peer_by_id("claimed")
    assert enrolled is not None
    assert enrolled.public_key == operator_key.public_key
    assert enrolled.via == "operator"
