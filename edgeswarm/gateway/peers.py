"""Which keys may talk to the gateway, under which name and role.

The registry is a small SQLite database in the gateway's data directory, so
that ``edgeswarm keys`` can change it while the gateway runs. A key gets in
one of two ways, like a node joining a K3s cluster:

- **pre-registered**: an operator adds the public key with a peer id and a
  role (``edgeswarm keys add``);
- **join token**: an operator issues a token for a role (``edgeswarm keys
  issue``); a peer presents it in HELLO with a new key, and once the key has
  signed the challenge the key is enrolled under the HELLO's peer id. Tokens
  expire and have a number of uses.

``check(hello)`` decides before the challenge whether the peer may try at
all; ``admit(decision)`` records an enrollment once the signature verified.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from edgeswarm.errors import EdgeswarmError
from edgeswarm.identity import fingerprint
from edgeswarm.resource import Resource
from edgeswarm.wire import ErrorCode, Hello, Role

TOKEN_PREFIX = "es1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS peers (
    public_key BLOB PRIMARY KEY,
    peer_id TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    added_at REAL NOT NULL,
    via TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY,
    secret_sha256 BLOB NOT NULL,
    role TEXT NOT NULL,
    expires_at REAL NOT NULL,
    uses_left INTEGER NOT NULL,
    created_at REAL NOT NULL
);
"""


class PeerRegistryError(EdgeswarmError):
    """The registry cannot do what was asked (duplicate id, token used up, database error)."""


@dataclass(frozen=True)
class Peer:
    """An enrolled key."""

    peer_id: str
    role: Role
    public_key: bytes
    added_at: float
    via: str
    """``operator`` or ``token:<id>``."""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


@dataclass(frozen=True)
class Decision:
    """Outcome of ``check``: go on to the challenge, or refuse with a code."""

    allowed: bool
    code: ErrorCode = ErrorCode.NO_ERROR
    reason: str = ""
    enroll_token: str | None = None
    """Set when the key is new and a valid join token vouches for it."""


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _split_token(token: str) -> tuple[str, str] | None:
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


class PeerRegistry(Resource):
    """The enrolled keys and open join tokens of one gateway."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # --- operator side ----------------------------------------------------

    def add_peer(
        self,
        public_key: bytes,
        peer_id: str,
        role: Role,
        *,
        via: str = "operator",
        replace: bool = False,
    ) -> Peer:
        """Enroll ``public_key`` as ``peer_id`` with ``role``."""
        if not 1 <= len(peer_id) <= 128:
            raise PeerRegistryError("a peer id has 1 to 128 characters")
        existing = self.peer_by_id(peer_id)
        if existing is not None and existing.public_key != public_key and not replace:
            raise PeerRegistryError(
                f"peer id {peer_id!r} already belongs to key {existing.fingerprint}; "
                "remove it first or replace it"
            )
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "DELETE FROM peers WHERE peer_id = ? OR public_key = ?", (peer_id, public_key)
            )
            self._db.execute(
                "INSERT INTO peers VALUES (?, ?, ?, ?, ?)",
                (public_key, peer_id, Role(role).value, now, via),
            )
        return Peer(peer_id, Role(role), public_key, now, via)

    def remove_peer(self, peer_id: str) -> bool:
        """Forget ``peer_id``'s key; True if there was one."""
        cursor = self._db.execute("DELETE FROM peers WHERE peer_id = ?", (peer_id,))
        return cursor.rowcount > 0

    def peers(self) -> list[Peer]:
        rows = self._db.execute(
            "SELECT peer_id, role, public_key, added_at, via FROM peers ORDER BY peer_id"
        ).fetchall()
        return [Peer(r[0], Role(r[1]), r[2], r[3], r[4]) for r in rows]

    def peer_by_id(self, peer_id: str) -> Peer | None:
        row = self._db.execute(
            "SELECT peer_id, role, public_key, added_at, via FROM peers WHERE peer_id = ?",
            (peer_id,),
        ).fetchone()
        return None if row is None else Peer(row[0], Role(row[1]), row[2], row[3], row[4])

    def issue_token(self, role: Role, *, ttl_s: float = 24 * 3600, uses: int = 1) -> str:
        """A new join token for ``role``: ``es1.<id>.<secret>``; only its hash is stored."""
        if uses < 1 or ttl_s <= 0:
            raise PeerRegistryError("a token needs at least one use and a positive lifetime")
        token_id = base64.urlsafe_b64encode(os.urandom(6)).decode().rstrip("=")
        secret = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
        now = time.time()
        self._db.execute(
            "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?)",
            (token_id, _hash(secret), Role(role).value, now + ttl_s, uses, now),
        )
        return f"{TOKEN_PREFIX}.{token_id}.{secret}"

    # --- gateway side -----------------------------------------------------

    def check(self, hello: Hello) -> Decision:
        """May this HELLO go on to the challenge?"""
        row = self._db.execute(
            "SELECT peer_id, role FROM peers WHERE public_key = ?", (hello.public_key,)
        ).fetchone()
        if row is not None:
            peer_id, role = row
            if role != Role(hello.role).value:
                return Decision(
                    False,
                    ErrorCode.ROLE_NOT_ALLOWED,
                    f"key {fingerprint(hello.public_key)} is enrolled as {role}, not {hello.role}",
                )
            if peer_id != hello.peer_id:
                return Decision(
                    False,
                    ErrorCode.AUTH_FAILED,
                    f"key {fingerprint(hello.public_key)} belongs to peer {peer_id!r}",
                )
            return Decision(True)
        if hello.join_token is None:
            return Decision(
                False,
                ErrorCode.UNKNOWN_PEER,
                f"key {fingerprint(hello.public_key)} is not enrolled and no join token was given",
            )
        problem = self._token_problem(hello.join_token, hello.role)
        if problem is not None:
            return Decision(False, ErrorCode.BAD_TOKEN, problem)
        taken = self.peer_by_id(hello.peer_id)
        if taken is not None:
            return Decision(
                False,
                ErrorCode.AUTH_FAILED,
                f"peer id {hello.peer_id!r} already belongs to key {taken.fingerprint}",
            )
        return Decision(True, enroll_token=hello.join_token)

    def admit(self, hello: Hello, decision: Decision) -> None:
        """After the signature verified: enroll a key that came with a join token.

        Raises :class:`PeerRegistryError` when the token was used up meanwhile or
        the registry cannot be written (locked, disk full): the peer is refused.
        """
        if decision.enroll_token is None:
            return
        try:
            self._enroll(hello, decision.enroll_token)
        except sqlite3.Error as exc:
            raise PeerRegistryError(f"peer registry {self.path}: {exc}") from exc

    def _enroll(self, hello: Hello, token: str) -> None:
        parts = _split_token(token)
        assert parts is not None
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            updated = self._db.execute(
                "UPDATE tokens SET uses_left = uses_left - 1 "
                "WHERE token_id = ? AND uses_left > 0 AND expires_at > ?",
                (parts[0], time.time()),
            ).rowcount
            if not updated:
                raise PeerRegistryError("join token used up or expired meanwhile")
            self._db.execute(
                "INSERT OR REPLACE INTO peers VALUES (?, ?, ?, ?, ?)",
                (
                    hello.public_key,
                    hello.peer_id,
                    Role(hello.role).value,
                    time.time(),
                    f"token:{parts[0]}",
                ),
            )

    def _token_problem(self, token: str, role: Role) -> str | None:
        parts = _split_token(token)
        if parts is None:
            return "malformed join token"
        row = self._db.execute(
            "SELECT secret_sha256, role, expires_at, uses_left FROM tokens WHERE token_id = ?",
            (parts[0],),
        ).fetchone()
        if row is None or not hmac.compare_digest(row[0], _hash(parts[1])):
            return "unknown join token"
        if row[2] <= time.time():
            return "join token expired"
        if row[3] <= 0:
            return "join token used up"
        if row[1] != Role(role).value:
            return f"join token is for role {row[1]}, not {role}"
        return None
