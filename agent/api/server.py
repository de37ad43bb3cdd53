"""Binding and running the API: 127.0.0.1 only, and the bind is the single-instance lock."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
from dataclasses import dataclass

from aiohttp import web

from .. import __version__, osroom
from ..config import Config
from ..errors import AgentError
from ..readers.base import ReaderBackend
from .app import create_app
from .keys import CARD_SERVICE

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1), 10048}


class PortInUse(AgentError):
    code = "port_in_use"


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


@dataclass
class RunningServer:
    runner: web.AppRunner
    app: web.Application
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_server(config: Config, *, backend: ReaderBackend | None = None
                       ) -> RunningServer:
    """Bind first (fail fast when the port is taken), then start the app.

    For embedding (the tray runs this in its worker thread's loop); ``serve`` wraps it.
    """
    sock = bind_socket(config.port)
    try:
        app = create_app(config, backend=backend)
        runner = web.AppRunner(app, handle_signals=False, access_log=logging.getLogger(
            "aiohttp.access"))
        await runner.setup()
        site = web.SockSite(runner, sock, shutdown_timeout=2.0)
        await site.start()
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]
    return RunningServer(runner, app, port)


async def serve(config: Config, *, backend: ReaderBackend | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):   # Windows: KeyboardInterrupt instead
            pass
    server = await start_server(config, backend=backend)
    kind = server.app[CARD_SERVICE].backend.kind
    log.info("Thai Card Agent listening on %s (%s backend)", server.url, kind)
    print(f"Thai Card Agent {__version__}: {server.url}/ ({kind} reader)", file=sys.stderr,
          flush=True)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await server.stop()
