"""PeerRegistry: enrolled keys, join tokens and the decisions taken on a HELLO (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeswarm.gateway.peers import Decision, PeerRegistry, PeerRegistryError, TokenUsedUp
from edgeswarm.identity import KeyPair
from edgeswarm.wire import PROTOCOL_VERSION, ErrorCode, Hello, Role


@pytest.fixture
def registry(tmp_path: Path):
    with PeerRegistry(tmp_path / "peers.db") as opened:
        yield opened


def hello(key: KeyPair, peer_id: str, role: Role = Role.EDGE, token: str | None = None) -> Hello:
    return Hello(
        version=PROTOCOL_VERSION,
        role=role,
        peer_id=peer_id,
        public_key=key.public_key,
        join_token=token,
    )


class Clock:
    """Stands in for ``time.time`` in the registry module: tokens expire on demand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(1_000_000.0)
    monkeypatch.setattr("edgeswarm.gateway.peers.time.time", fake)
    return fake


def test_add_list_and_remove_peers(registry: PeerRegistry) -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    registry.add_peer(b.public_key, "zeta", Role.ADMIN)
    peer = registry.add_peer(a.public_key, "alpha", Role.EDGE)
    assert (peer.peer_id, peer.role, peer.via) == ("alpha", Role.EDGE, "operator")
    assert [p.peer_id for p in registry.peers()] == ["alpha", "zeta"]  # by peer id
    assert registry.peer_by_id("alpha") == peer
    assert registry.check(hello(a, "alpha")) == Decision(True)
    assert registry.remove_peer("alpha") is True
    assert registry.remove_peer("alpha") is False  # nothing left to remove
    assert registry.peer_by_id("alpha") is None
    assert registry.check(hello(a, "alpha")).code is ErrorCode.UNKNOWN_PEER
    assert [p.peer_id for p in registry.peers()] == ["zeta"]


def test_a_peer_id_belongs_to_one_key_unless_replaced(registry: PeerRegistry) -> None:
    old, new = KeyPair.generate(), KeyPair.generate()
    registry.add_peer(old.public_key, "edge-1", Role.EDGE)
    registry.add_peer(old.public_key, "edge-1", Role.EDGE)  # the same key again: fine
    with pytest.raises(PeerRegistryError, match="already belongs to key"):
        registry.add_peer(new.public_key, "edge-1", Role.EDGE)
    registry.add_peer(new.public_key, "edge-1", Role.EDGE, replace=True)
    assert registry.check(hello(new, "edge-1")).allowed
    assert registry.check(hello(old, "edge-1")).code is ErrorCode.UNKNOWN_PEER
    # one key, one peer id: enrolling the key under another id is refused, never a move
    # (issue 15: `keys add --peer-id B --public-key <A's key>` silently removed A)
    with pytest.raises(PeerRegistryError, match="enrolled as peer 'edge-1'"):
        registry.add_peer(new.public_key, "edge-2", Role.EDGE)
    assert [p.peer_id for p in registry.peers()] == ["edge-1"]
    for bad in ("", "x" * 129):
        with pytest.raises(PeerRegistryError, match="1 to 128 characters"):
            registry.add_peer(KeyPair.generate().public_key, bad, Role.EDGE)


def test_enrolled_keys_keep_their_role_and_their_id(registry: PeerRegistry) -> None:
    key = KeyPair.generate()
    registry.add_peer(key.public_key, "edge-1", Role.EDGE)
    wrong_role = registry.check(hello(key, "edge-1", Role.ADMIN))
    assert (wrong_role.allowed, wrong_role.code) == (False, ErrorCode.ROLE_NOT_ALLOWED)
    assert "enrolled as edge, not admin" in wrong_role.reason
    other_id = registry.check(hello(key, "edge-2"))
    assert (other_id.allowed, other_id.code) == (False, ErrorCode.AUTH_FAILED)
    assert "belongs to peer 'edge-1'" in other_id.reason
    unknown = registry.check(hello(KeyPair.generate(), "edge-3"))
    assert (unknown.allowed, unknown.code) == (False, ErrorCode.UNKNOWN_PEER)
    assert "no join token was given" in unknown.reason


def test_a_join_token_enrolls_as_many_keys_as_it_has_uses(registry: PeerRegistry) -> None:
    token = registry.issue_token(Role.EDGE, uses=2)
    assert token.startswith("es1.")
    for n in (1, 2):
        key = KeyPair.generate()
        request = hello(key, f"edge-{n}", token=token)
        decision = registry.check(request)
        assert decision == Decision(True, enroll_token=token)
        registry.admit(request, decision)
        enrolled = registry.peer_by_id(f"edge-{n}")
        assert enrolled is not None
        assert enrolled.public_key == key.public_key
        assert enrolled.via == f"token:{token.split('.')[1]}"
        assert registry.check(hello(key, f"edge-{n}")) == Decision(True)  # no token needed now
    used_up = registry.check(hello(KeyPair.generate(), "edge-3", token=token))
    assert (used_up.code, used_up.reason) == (ErrorCode.BAD_TOKEN, "join token used up")


def test_a_token_that_was_used_up_meanwhile_admits_nobody(registry: PeerRegistry) -> None:
    token = registry.issue_token(Role.EDGE, uses=1)
    first, second = (
        hello(KeyPair.generate(), "a", token=token),
        hello(KeyPair.generate(), "b", token=token),
    )
    decisions = [registry.check(first), registry.check(second)]  # both checked before AUTH
    assert all(d.allowed for d in decisions)
    registry.admit(first, decisions[0])
    with pytest.raises(TokenUsedUp, match="used up or expired meanwhile"):
        registry.admit(second, decisions[1])
    assert registry.peer_by_id("b") is None


def test_expired_tokens_are_refused(registry: PeerRegistry, clock: Clock) -> None:
    token = registry.issue_token(Role.EDGE, ttl_s=60)
    request = hello(KeyPair.generate(), "late", token=token)
    clock.now += 59
    decision = registry.check(request)
    assert decision.allowed
    clock.now += 1  # expired between the check and the signature
    with pytest.raises(TokenUsedUp, match="used up or expired meanwhile"):
        registry.admit(request, decision)
    refused = registry.check(request)
    assert (refused.code, refused.reason) == (ErrorCode.BAD_TOKEN, "join token expired")
    assert registry.peer_by_id("late") is None


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda t: "nonsense", "malformed join token"),
        (lambda t: t.replace("es1.", "es2."), "malformed join token"),
        (lambda t: t + ".extra", "malformed join token"),
        (lambda t: "es1..secret", "malformed join token"),
        (lambda t: "es1." + "x" * 8 + "." + t.split(".")[2], "unknown join token"),
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "unknown join token"),
    ],
    ids=["garbage", "prefix", "parts", "empty-id", "unknown-id", "wrong-secret"],
)
def test_invalid_tokens_are_refused(registry: PeerRegistry, mangle, reason: str) -> None:
    token = registry.issue_token(Role.EDGE)
    decision = registry.check(hello(KeyPair.generate(), "edge-x", token=mangle(token)))
    assert (decision.allowed, decision.code, decision.reason) == (
        False,
        ErrorCode.BAD_TOKEN,
        reason,
    )


def test_a_token_is_for_one_role_and_cannot_take_an_id(registry: PeerRegistry) -> None:
    token = registry.issue_token(Role.EDGE)
    as_admin = registry.check(hello(KeyPair.generate(), "ops", Role.ADMIN, token=token))
    assert (as_admin.code, as_admin.reason) == (
        ErrorCode.BAD_TOKEN,
        "join token is for role edge, not admin",
    )
    registry.add_peer(KeyPair.generate().public_key, "taken", Role.EDGE)
    squatter = registry.check(hello(KeyPair.generate(), "taken", token=token))
    assert squatter.code is ErrorCode.AUTH_FAILED
    assert "already belongs to key" in squatter.reason


def test_admit_without_a_token_changes_nothing(registry: PeerRegistry) -> None:
    key = KeyPair.generate()
    registry.add_peer(key.public_key, "edge-1", Role.EDGE)
    registry.admit(hello(key, "edge-1"), Decision(True))
    assert [p.via for p in registry.peers()] == ["operator"]


@pytest.mark.parametrize(("ttl", "uses"), [(0, 1), (-1, 1), (60, 0)])
def test_a_token_needs_a_lifetime_and_a_use(registry: PeerRegistry, ttl: float, uses: int) -> None:
    with pytest.raises(PeerRegistryError, match="at least one use and a positive lifetime"):
        registry.issue_token(Role.EDGE, ttl_s=ttl, uses=uses)


def test_the_registry_is_shared_through_its_file(tmp_path: Path) -> None:
    """``edgeswarm keys`` changes the file while the gateway has it open."""
    key = KeyPair.generate()
    with PeerRegistry(tmp_path / "peers.db") as gateway_side:
        assert not gateway_side.check(hello(key, "edge-1")).allowed
        with PeerRegistry(tmp_path / "peers.db") as operator_side:
            operator_side.add_peer(key.public_key, "edge-1", Role.EDGE)
        assert gateway_side.check(hello(key, "edge-1")).allowed
        with PeerRegistry(tmp_path / "peers.db") as operator_side:
            assert operator_side.remove_peer("edge-1")
        assert gateway_side.check(hello(key, "edge-1")).code is ErrorCode.UNKNOWN_PEER
