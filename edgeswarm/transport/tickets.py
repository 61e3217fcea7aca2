"""TLS session tickets: what lets a reconnect resume (and send 0-RTT data).

``TicketStore`` is the client's: ``connect(..., tickets=store)`` offers the
ticket stored for the same (stack, host, port, server name) and stores the
one the gateway issues. ``ServerTicketStore`` is the server's, one per
listener: tickets it issued, looked up by their opaque id, single use (a
ticket presented twice is not resumed twice, which bounds 0-RTT replay).
Both live in memory only.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

TicketKey = tuple[str, str, int, str]
"""(stack, host, port, server name)."""


class TicketStore:
    """Client-side session tickets, the newest per gateway address."""

    def __init__(self, *, max_entries: int = 256) -> None:
        self._tickets: OrderedDict[TicketKey, Any] = OrderedDict()
        self._max_entries = max_entries

    def get(self, key: TicketKey) -> Any | None:
        """The ticket stored for ``key`` if it is still valid, else None."""
        ticket = self._tickets.get(key)
        if ticket is not None and not getattr(ticket, "is_valid", True):
            del self._tickets[key]
            return None
        return ticket

    def put(self, key: TicketKey, ticket: Any) -> None:
        """Keep ``ticket`` (a library ``SessionTicket``) for the next connect to ``key``."""
        self._tickets[key] = ticket
        self._tickets.move_to_end(key)
        while len(self._tickets) > self._max_entries:
            self._tickets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._tickets)


class ServerTicketStore:
    """Server-side session tickets by ticket id: ``add`` issues, ``pop`` redeems once."""

    def __init__(self, *, max_entries: int = 65536) -> None:
        self._tickets: OrderedDict[bytes, Any] = OrderedDict()
        self._max_entries = max_entries

    def add(self, ticket: Any) -> None:
        """The library's ``session_ticket_handler``."""
        self._tickets[bytes(ticket.ticket)] = ticket
        while len(self._tickets) > self._max_entries:
            self._tickets.popitem(last=False)

    def pop(self, label: bytes) -> Any | None:
        """The library's ``session_ticket_fetcher``."""
        return self._tickets.pop(bytes(label), None)

    def __len__(self) -> int:
        return len(self._tickets)
