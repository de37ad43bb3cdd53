"""Slow and greedy clients: how long a request may take to arrive, and how many at once.

Every caller is on loopback, so a "client" is told apart by what it says it is: its
``Origin`` (a page) or "a local program". Each gets its own caps on requests in progress
and on open WebSockets, so a misbehaving program cannot use up what the allowed page needs;
over a cap the answer is 429 ``too_many_requests`` at once, not a wait.

Below the requests, the connections (see ``agent/api/server.py``): a request head must
arrive within ``HEAD_TIMEOUT`` of the connection opening (or of the previous answer: the
idle keep-alive limit is the same number), a body within ``BODY_TIMEOUT``, and the
server holds at most so many sockets (the process's descriptor limit less a reserve, at most
1024), closing the longest-idle one to make room for a new one, so half-sent requests cannot
hold sockets or file descriptors (macOS gives a process 256 by default). Local programs
together may keep at most half of them busy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

HEAD_TIMEOUT = 10.0            # seconds from connect (or the last answer) to a full head
BODY_TIMEOUT = 10.0            # seconds for a whole body (ours are a few hundred bytes)
MAX_REQUESTS_PER_PAGE = 32     # requests in progress per origin (a card read waits ~2 s)
MAX_WEBSOCKETS_PER_PAGE = 8    # a page needs one; a few tabs, a few more
RESERVED_FILES = 64            # descriptors kept for the log, the outbox, PC/SC, the keyring
CONNECTIONS_CEILING = 1024
LOCAL = "(local)"              # every local program shares one budget: half the sockets


@dataclass(frozen=True)
class ServerLimits:
    head_timeout: float = HEAD_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    max_connections: int | None = None     # None: from the process's descriptor limit
    requests_per_page: int = MAX_REQUESTS_PER_PAGE
    websockets_per_page: int = MAX_WEBSOCKETS_PER_PAGE

    def connections(self, open_files: int) -> int:
        if self.max_connections is not None:
            return self.max_connections
        return max(16, min(CONNECTIONS_CEILING, open_files - RESERVED_FILES))

    def client_limits(self, open_files: int) -> ClientLimits:
        local = max(1, self.connections(open_files) // 2)
        return ClientLimits(self.requests_per_page, self.websockets_per_page, local,
                            body_timeout=self.body_timeout)


@dataclass
class ClientLimits:
    max_requests: int = MAX_REQUESTS_PER_PAGE
    max_websockets: int = MAX_WEBSOCKETS_PER_PAGE
    max_local: int = CONNECTIONS_CEILING // 2   # requests, and WebSockets, of local programs
    body_timeout: float = BODY_TIMEOUT
    requests: Counter[str] = field(default_factory=Counter)
    websockets: Counter[str] = field(default_factory=Counter)
    # Transports with a request (or a WebSocket) in progress: never cut as idle.
    busy: set[object] = field(default_factory=set)

    @contextmanager
    def hold(self, client: str, *, websocket: bool,
             transport: object | None = None) -> Iterator[bool]:
        """Count a request (or a WebSocket, for its whole life) of ``client`` while it runs;
        yields False, counting nothing, when the client is at its cap."""
        counter = self.websockets if websocket else self.requests
        if client == LOCAL:
            cap = self.max_local
        else:
            cap = self.max_websockets if websocket else self.max_requests
        if counter[client] >= cap:
            yield False
            return
        counter[client] += 1
        if transport is not None:
            self.busy.add(transport)
        try:
            yield True
        finally:
            counter[client] -= 1
            if counter[client] <= 0:
                del counter[client]
            if transport is not None:
                self.busy.discard(transport)
