"""The listening socket: 127.0.0.1 only, and the bind is the single-instance lock.

``agent.assembly`` binds through ``bind_socket`` before it builds anything, so a second
agent (or the NHSO agent on the same port) is reported at once.
"""

from __future__ import annotations

import errno
import socket

from .. import osroom
from ..errors import AgentError, PortInUse

HOST = "127.0.0.1"
_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1), 10048}


def bind_socket(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port, or PortInUse.

    No SO_REUSEADDR on Windows (there it would let a second process take the port) and
    SO_EXCLUSIVEADDRUSE instead; on POSIX, SO_REUSEADDR only skips TIME_WAIT and never
    allows two listeners.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        osroom.current().set_listen_options(sock)
        sock.bind((HOST, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno in _IN_USE or getattr(exc, "winerror", None) in _IN_USE:
            raise PortInUse(f"{HOST}:{port} is in use (another Thai Card Agent or the NHSO "
                            f"agent?); stop it or choose another port with --port") from None
        raise AgentError(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}",
                         code="port_in_use") from None
    sock.setblocking(False)
    return sock
