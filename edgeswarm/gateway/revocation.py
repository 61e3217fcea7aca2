"""Revocation that bites: a key removed from ``peers.db`` loses its open sessions.

``edgeswarm keys remove`` (and ``keys add --replace``, or a hand edit) changes
the registry from another process while the gateway runs. The gateway learns
it from SQLite itself: ``PRAGMA data_version`` on the gateway's own connection
changes whenever another connection commits to the file. :class:`RevocationWatch`
reads it every ``interval_s`` (a quarter of a second: one pragma, no file
scan); when it changed, every open session whose key is no longer enrolled
under the same peer id and role is closed with ERROR + BYE ``KEY_REVOKED``,
logged (``session revoked``) and counted
(``edgeswarm_gateway_sessions_revoked_total{role}``).

Why not a command over the admin session: ``keys`` works on the data
directory (file access is the authority, as for ``keys issue``), it needs no
admin key or running gateway, and the same watch catches every way the file
can change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from edgeswarm.identity import fingerprint
from edgeswarm.wire import Role

from .peers import PeerRegistry, PeerRegistryError

__all__ = ["DEFAULT_INTERVAL_S", "Revocable", "RevocationWatch"]

logger = logging.getLogger("edgeswarm.gateway")

DEFAULT_INTERVAL_S = 0.25
"""How often the registry's ``data_version`` is read: a removed key's sessions end
within this (plus a loop turn), well inside a second."""


class Revocable(Protocol):
    """An open session that can be closed because its key was revoked."""

    @property
    def public_key(self) -> bytes | None:
        """The key its peer proved; None before WELCOME."""

    @property
    def peer_id(self) -> str | None: ...

    @property
    def role(self) -> Role | None: ...

    @property
    def peer(self) -> str:
        """The remote address, for the log."""

    def revoke(self, reason: str) -> None:
        """Close with ERROR + BYE ``KEY_REVOKED`` (nothing when closed already)."""


class RevocationWatch:
    """Closes the sessions whose key left the registry (see the module docstring)."""

    def __init__(
        self,
        peers: PeerRegistry,
        sessions: Callable[[], Iterable[Revocable]],
        *,
        on_revoked: Callable[[str], None] | None = None,
        on_error: Callable[[], None] | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        """``on_revoked(role)`` counts each session closed; ``on_error()`` each failed read
        of the registry."""
        self._peers = peers
        self._sessions = sessions
        self._on_revoked = on_revoked
        self._on_error = on_error
        self.interval_s = interval_s
        self.revoked = 0
        """Sessions closed so far."""
        peers.changed()  # the version the gateway starts from

    def check(self) -> int:
        """If the registry changed since the last check, revoke what it no longer admits;
        returns the number of sessions closed. A registry that cannot be read is logged
        and counted, and checked again next time."""
        try:
            if not self._peers.changed():
                return 0
            enrolled = self._peers.enrolled()
        except PeerRegistryError as exc:
            if self._on_error is not None:
                self._on_error()
            logger.error(
                "peer registry failed",
                extra={"path": str(self._peers.path), "error": str(exc)},
            )
            return 0
        closed = 0
        for session in list(self._sessions()):
            key, peer_id, role = session.public_key, session.peer_id, session.role
            if key is None or peer_id is None or role is None:
                continue  # not authenticated yet: its AUTH reads the registry itself
            entry = enrolled.get(key)
            if entry == (peer_id, role):
                continue
            if entry is None:
                reason = f"key {fingerprint(key)} of {peer_id!r} was removed from the registry"
            else:
                reason = (
                    f"key {fingerprint(key)} is now enrolled as {entry[0]!r}"
                    f" ({entry[1].value}), not {peer_id!r} ({role.value})"
                )
            logger.warning(
                "session revoked: its key is no longer enrolled",
                extra={
                    "peer_id": peer_id,
                    "role": role.value,
                    "peer": session.peer,
                    "code": "KEY_REVOKED",
                    "reason": reason,
                },
            )
            session.revoke(reason)
            if self._on_revoked is not None:
                self._on_revoked(role.value)
            closed += 1
        self.revoked += closed
        return closed

    async def run(self) -> None:
        """Check every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            self.check()
