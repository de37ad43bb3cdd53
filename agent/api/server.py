"""The listening sockets: every loopback address of the port is ours, and the bind is the
single-instance lock.

Browsers try ``http://localhost:PORT`` on ``::1`` first. If the agent listened on 127.0.0.1
only, any program could take ``[::1]:PORT`` and receive what pages send to
``localhost``. So the agent binds ``[::1]:PORT`` too (an IPv6-only socket, so the two never
overlap) wherever the machine has IPv6 loopback, and a taken ``[::1]:PORT`` is reported like
a taken 127.0.0.1 port. Without IPv6 loopback nobody can listen there, and the guard does not
treat ``localhost``/``[::1]`` as the agent's own (``security.allowed_hosts``).

``agent.assembly`` binds through ``bind_sockets`` before it builds anything, so a second
agent (or the NHSO agent on the same port) is reported at once. ``GatedSockSite`` serves
them behind the connection cap of ``ConnectionGate`` (``limits.py`` explains the numbers).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .. import osroom
from ..errors import AgentError, PortInUse
from .limits import ClientLimits

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
HOST_V6 = "::1"
_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1), 10048}
# No IPv6 loopback on this machine: IPv6 turned off, or no ::1 on lo.
_NO_V6 = {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, getattr(errno, "WSAEADDRNOTAVAIL", -1),
          getattr(errno, "WSAEAFNOSUPPORT", -1), 10049, 10047}
EPHEMERAL_TRIES = 20          # port 0 (tests): the v4 port may be taken on v6; try another


@dataclass
class Listening:
    sockets: list[socket.socket]
    port: int

    @property
    def loopback_v6(self) -> bool:
        return len(self.sockets) > 1

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def _in_use(exc: OSError) -> bool:
    return exc.errno in _IN_USE or getattr(exc, "winerror", None) in _IN_USE


def _listen(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        osroom.current().set_listen_options(sock)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _port_error(host: str, port: int, exc: OSError) -> AgentError:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if _in_use(exc):
        return PortInUse(f"{where} is in use (another Thai Card Agent or the NHSO agent?); "
                         f"stop it or choose another port with --port")
    return AgentError(f"cannot listen on {where}: {exc.strerror or exc}", code="port_in_use")


def bind_sockets(port: int) -> Listening:
    """127.0.0.1:port and, where IPv6 loopback exists, [::1]:port; else PortInUse."""
    for _ in range(EPHEMERAL_TRIES if port == 0 else 1):
        try:
            v4 = _listen(socket.AF_INET, HOST, port)
        except OSError as exc:
            raise _port_error(HOST, port, exc) from None
        bound = v4.getsockname()[1]
        if not socket.has_ipv6:
            return Listening([v4], bound)
        try:
            v6 = _listen(socket.AF_INET6, HOST_V6, bound)
        except OSError as exc:
            if exc.errno in _NO_V6 or getattr(exc, "winerror", None) in _NO_V6:
                log.info("no IPv6 loopback: listening on %s only; localhost is not ours", HOST)
                return Listening([v4], bound)
            v4.close()
            if port == 0 and _in_use(exc):
                continue                 # an ephemeral port free on v4 only: pick another
            raise _port_error(HOST_V6, bound, exc) from None
        return Listening([v4, v6], bound)
    raise AgentError("no ephemeral port is free on both loopback addresses",
                     code="port_in_use")


@dataclass
class ConnectionGate:
    """At most ``max_connections`` sockets: past it, the longest-idle connection (not in a
    request: a slow head, a silent socket, a spent keep-alive) is closed for the new one.
    Requests in progress and WebSockets are never cut here; the per-caller caps bound them."""

    limits: ClientLimits
    max_connections: int
    _handlers: list[tuple[float, RequestHandler]] = field(default_factory=list)
    evicted: int = 0

    def adopt(self, handler: RequestHandler) -> RequestHandler:
        now = time.monotonic()
        # Forget closed connections (and ones that never got a socket within a second).
        self._handlers = [(t, h) for t, h in self._handlers
                          if h.transport is not None or now - t < 1.0]
        live = [(t, h) for t, h in self._handlers if h.transport is not None]
        excess = len(live) + 1 - self.max_connections
        if excess > 0:
            idle = [h for _, h in live if h.transport not in self.limits.busy]
            for victim in idle[:excess]:
                victim.force_close()
                self.evicted += 1
        self._handlers.append((now, handler))
        return handler


class GatedSockSite(web.SockSite):
    """``web.SockSite`` whose connections pass through a ``ConnectionGate``."""

    __slots__ = ("_gate",)

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, gate: ConnectionGate,
                 **kwargs: Any) -> None:
        super().__init__(runner, sock, **kwargs)
        self._gate = gate

    async def start(self) -> None:
        await web.BaseSite.start(self)          # registers the site with the runner
        server = self._runner.server
        assert server is not None
        gate = self._gate
        self._server = await asyncio.get_running_loop().create_server(
            lambda: gate.adopt(server()), sock=self._sock, backlog=self._backlog)
