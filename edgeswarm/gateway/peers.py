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
all; ``admit(decision)`` records an enrollment once the signature verified,
deciding again in the same transaction: one peer id belongs to one key, so of
two enrollments racing for a new id (a token with several uses) the second is
refused, and an operator's ``keys add`` of an id that a HELLO claimed while
it was being challenged wins.

Errors (one tree)::

    PeerRegistryError       the registry cannot do what was asked (an EdgeswarmError);
    │                       ``error_code`` is what a refused peer is told
    └── EnrollmentConflict  the id or the key was enrolled meanwhile (AUTH_FAILED)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from edgeswarm.errors import EdgeswarmError
from edgeswarm.identity import fingerprint
from edgeswarm.resource import Resource
from edgeswarm.state import client_id_for
from edgeswarm.storage import Schema, open_operator_store, sqlite_errors, statements, transaction
from edgeswarm.wire import ErrorCode, Hello, Role

PEER_ID_MAX_CHARS = 128
"""Longest peer id (HELLO's ``peer_id`` limit, docs/protocol.md section 4.1)."""
TOKEN_PREFIX = "es1"

_PEERS = """CREATE TABLE IF NOT EXISTS peers (
    public_key BLOB PRIMARY KEY,
    peer_id TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    added_at REAL NOT NULL,
    via TEXT NOT NULL
)"""
_TOKENS = """CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY,
    secret_sha256 BLOB NOT NULL,
    role TEXT NOT NULL,
    expires_at REAL NOT NULL,
    uses_left INTEGER NOT NULL,
    created_at REAL NOT NULL
)"""
_WRITERS = """CREATE TABLE IF NOT EXISTS writers (
    client_id INTEGER PRIMARY KEY,
    peer_id TEXT NOT NULL,
    incarnation INTEGER NOT NULL,
    bound_at REAL NOT NULL
)"""
SCHEMA = Schema(
    version=1,
    create=(_PEERS, _TOKENS, _WRITERS),
    tables=frozenset({"peers", "tokens"}),
    upgrades={0: statements(_WRITERS)},  # files before versions: peers and tokens only
)
"""``peers.db``: enrolled keys, join tokens, and the swarm-state writer ids bound to peers."""


class PeerRegistryError(EdgeswarmError):
    """The registry cannot do what was asked (duplicate id, token used up, database error)."""

    error_code: ErrorCode = ErrorCode.INTERNAL_ERROR
    """What a peer refused because of it is told."""


class EnrollmentConflict(PeerRegistryError):  # noqa: N818 (names a situation, like a 409)
    """The peer id (or the key) was enrolled for someone else meanwhile: one id, one key."""

    error_code = ErrorCode.AUTH_FAILED


class TokenUsedUp(PeerRegistryError):  # noqa: N818
    """The join token expired or lost its last use meanwhile."""

    error_code = ErrorCode.BAD_TOKEN


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

    def __init__(self, path: Path, *, create: bool = True) -> None:
        """Open (or, with ``create``, create) ``peers.db``; raises
        :class:`PeerRegistryError` naming the file when it is absent (without
        ``create``), damaged, foreign or cannot be opened."""
        self.path = path
        if not create and not path.is_file():
            raise PeerRegistryError(
                f"no peer registry {path}: {path.parent} is not a gateway's data directory"
                " (the gateway creates peers.db at its first start)"
            )
        self._db = open_operator_store(
            path,
            SCHEMA,
            label="peer registry",
            error=PeerRegistryError,
            start_over=" (or move it aside and enroll every peer again)",
        )
        self._data_version: int | None = None

    def close(self) -> None:
        self._db.close()

    def _errors(self) -> AbstractContextManager[None]:
        """SQLite errors become :class:`PeerRegistryError` naming the file."""
        return sqlite_errors(PeerRegistryError, f"peer registry {self.path}")

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
        """Enroll ``public_key`` as ``peer_id`` with ``role``.

        One id, one key: raises :class:`PeerRegistryError` when ``peer_id`` has
        another key (unless ``replace``) or ``public_key`` is enrolled under
        another id (always: remove that peer first; a key never silently changes
        hands).
        """
        if not 1 <= len(peer_id) <= PEER_ID_MAX_CHARS:
            raise PeerRegistryError(f"a peer id has 1 to {PEER_ID_MAX_CHARS} characters")
        now = time.time()
        with self._errors(), transaction(self._db) as db:
            owner = db.execute(
                "SELECT peer_id FROM peers WHERE public_key = ? AND peer_id != ?",
                (public_key, peer_id),
            ).fetchone()
            if owner is not None:
                raise PeerRegistryError(
                    f"key {fingerprint(public_key)} is enrolled as peer {owner[0]!r};"
                    f" remove {owner[0]!r} first (`edgeswarm keys remove --peer-id {owner[0]}`)"
                )
            existing = db.execute(
                "SELECT public_key FROM peers WHERE peer_id = ?", (peer_id,)
            ).fetchone()
            if existing is not None and existing[0] != public_key and not replace:
                raise PeerRegistryError(
                    f"peer id {peer_id!r} already belongs to key {fingerprint(existing[0])}; "
                    "remove it first or replace it (--replace)"
                )
            db.execute(
                "DELETE FROM peers WHERE peer_id = ? OR public_key = ?", (peer_id, public_key)
            )
            db.execute(
                "INSERT INTO peers VALUES (?, ?, ?, ?, ?)",
                (public_key, peer_id, Role(role).value, now, via),
            )
        return Peer(peer_id, Role(role), public_key, now, via)

    def remove_peer(self, peer_id: str) -> bool:
        """Forget ``peer_id``'s key; True if there was one."""
        with self._errors():
            cursor = self._db.execute("DELETE FROM peers WHERE peer_id = ?", (peer_id,))
        return cursor.rowcount > 0

    def peers(self) -> list[Peer]:
        with self._errors():
            rows = self._db.execute(
                "SELECT peer_id, role, public_key, added_at, via FROM peers ORDER BY peer_id"
            ).fetchall()
        return [Peer(r[0], Role(r[1]), r[2], r[3], r[4]) for r in rows]

    def changed(self) -> bool:
        """Whether another connection (``edgeswarm keys`` in another process, a hand
        edit) committed to ``peers.db`` since the last call (SQLite's ``data_version``)."""
        with self._errors():
            (version,) = self._db.execute("PRAGMA data_version").fetchone()
        changed = self._data_version is not None and version != self._data_version
        self._data_version = version
        return changed

    def enrolled(self) -> dict[bytes, tuple[str, Role]]:
        """Every enrolled key with its peer id and role."""
        with self._errors():
            rows = self._db.execute("SELECT public_key, peer_id, role FROM peers").fetchall()
        return {bytes(r[0]): (r[1], Role(r[2])) for r in rows}

    def peer_by_id(self, peer_id: str) -> Peer | None:
        with self._errors():
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
        with self._errors():
            self._db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, _hash(secret), Role(role).value, now + ttl_s, uses, now),
            )
        return f"{TOKEN_PREFIX}.{token_id}.{secret}"

    # --- swarm-state writers ---------------------------------------------------

    def bind_writer(self, peer_id: str, incarnation: int) -> int:
        """Bind the swarm-state writer of ``peer_id``'s ``incarnation`` (its client id,
        ``state.schema.client_id_for``) to the peer, for good; return the client id.

        Raises :class:`EnrollmentConflict` when that client id is bound to another
        peer already (a 53-bit collision: the peer's state writes are refused).
        """
        client_id = client_id_for(peer_id, incarnation)
        with self._errors(), transaction(self._db) as db:
            db.execute(
                "INSERT OR IGNORE INTO writers VALUES (?, ?, ?, ?)",
                (client_id, peer_id, incarnation, time.time()),
            )
            (owner,) = db.execute(
                "SELECT peer_id FROM writers WHERE client_id = ?", (client_id,)
            ).fetchone()
        if owner != peer_id:
            raise EnrollmentConflict(f"state writer {client_id} is bound to peer {owner!r}")
        return int(client_id)

    def writers_of(self, peer_id: str) -> frozenset[int]:
        """Every swarm-state writer id bound to ``peer_id`` (all its incarnations)."""
        with self._errors():
            rows = self._db.execute(
                "SELECT client_id FROM writers WHERE peer_id = ?", (peer_id,)
            ).fetchall()
        return frozenset(int(row[0]) for row in rows)

    # --- gateway side -----------------------------------------------------

    def check(self, hello: Hello) -> Decision:
        """May this HELLO go on to the challenge? Raises :class:`PeerRegistryError`
        when the registry cannot be read."""
        with self._errors():
            return self._check(hello)

    def _check(self, hello: Hello) -> Decision:
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

        Decided again, in one transaction with the enrollment itself: the id
        may have been given to another key (a racing enrollment, an operator's
        ``keys add``) or the token used up since :meth:`check`. Raises
        :class:`EnrollmentConflict`, :class:`TokenUsedUp`, or
        :class:`PeerRegistryError` when the registry cannot be written (locked,
        disk full): the peer is refused with the error's ``error_code``.
        """
        if decision.enroll_token is None:
            return
        with self._errors():
            self._enroll(hello, decision.enroll_token)

    def _enroll(self, hello: Hello, token: str) -> None:
        parts = _split_token(token)
        assert parts is not None
        with transaction(self._db) as db:
            for peer_id, public_key in db.execute(
                "SELECT peer_id, public_key FROM peers WHERE peer_id = ? OR public_key = ?",
                (hello.peer_id, hello.public_key),
            ):
                if peer_id != hello.peer_id:
                    raise EnrollmentConflict(
                        f"key {fingerprint(hello.public_key)} was enrolled as {peer_id!r} meanwhile"
                    )
                raise EnrollmentConflict(
                    f"peer id {peer_id!r} was enrolled meanwhile"
                    + (" with another key" if public_key != hello.public_key else "")
                )
            updated = db.execute(
                "UPDATE tokens SET uses_left = uses_left - 1 "
                "WHERE token_id = ? AND uses_left > 0 AND expires_at > ?",
                (parts[0], time.time()),
            ).rowcount
            if not updated:
                raise TokenUsedUp("join token used up or expired meanwhile")
            db.execute(
                "INSERT INTO peers VALUES (?, ?, ?, ?, ?)",
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
