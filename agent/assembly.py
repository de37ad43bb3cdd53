"""The one place that turns configuration into a running agent.

    reader backend -> card service (core) --+
                                            +--> event bus (the app's) --> WebSocket, tray
    NHSO settings  -> NHSO service ---------+
                      \\-> coverage lookup for /api/smartcard/read
    config -> web app (routes of agent.api and agent.nhso) -> socket on 127.0.0.1

``serve`` (the headless command), the tray's embedded agent and the tests all build the
agent here, and shut it down through the app's cleanup contexts in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import __version__, osroom
from .api.app import new_web_app, setup_web
from .api.diagnostics import setup_diagnostics
from .api.keys import (
    ALLOW_ORIGIN,
    CARD_SERVICE,
    CLIENT_LIMITS,
    CONFIG,
    COVERAGE,
    EVENTS,
    LOOPBACK_V6,
    CoverageLookup,
)
from .api.limits import ServerLimits
from .api.metrics import ClaimSummary, setup_metrics
from .api.refusal_summary import AccessLogWithoutRefusals, server_logger
from .api.server import HOST, ConnectionGate, GatedSockSite, bind_sockets
from .config import Config
from .core import CardService, ReaderBackend, open_backend
from .events import Event, EventBus
from .lan.listener import LanListener, lan_from_settings, mount_lan
from .nhso.routes import mount_nhso, resolve_settings
from .nhso.service import NhsoService
from .nhso.settings import NhsoSettings
from .nhso.token import TokenStore
from .usecases import allow_origin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NhsoParts:
    """How to build the NHSO room: settings (None: from the files) and the keyring."""

    settings: NhsoSettings | None = None
    token_store: TokenStore | None = None


FROM_SETTINGS_FILES = NhsoParts()


def build_app(config: Config | None = None, *, backend: ReaderBackend | None = None,
              nhso: NhsoParts | None = FROM_SETTINGS_FILES,
              coverage: CoverageLookup | None = None, loopback_v6: bool = True,
              limits: ServerLimits | None = None,
              lan: LanListener | None = None) -> web.Application:
    """The agent's application, not yet started (the caller binds it or tests it).

    ``backend``: a reader backend (default: the one ``config.backend`` names). ``nhso``:
    None leaves the NHSO room out (card-only tests). ``coverage``: a lookup to use instead
    of the NHSO service's (tests of the compat shape). ``lan``: the LAN listener (default:
    from its settings; off unless an admin enabled it), started and stopped with the app.
    ``loopback_v6``: whether the agent holds [::1]:PORT too (``start_server`` knows).
    ``limits``: per-caller caps.
    """
    config = config or Config()
    events = EventBus()
    cards = CardService(backend if backend is not None else open_backend(config.backend),
                        events=events, default_reader=config.default_terminal,
                        read_photo=config.read_photo, read_timeout=config.read_timeout)
    app = new_web_app()
    app[CONFIG] = config
    app[EVENTS] = events
    app[CARD_SERVICE] = cards
    app[LOOPBACK_V6] = loopback_v6
    app[CLIENT_LIMITS] = (limits or ServerLimits()).client_limits(
        osroom.current().open_files_limit())
    app.cleanup_ctx.append(_card_service_ctx)
    setup_web(app)
    setup_diagnostics(app)
    if nhso is not None:
        service = _nhso_service(nhso, events)
        mount_nhso(app, service)
        app[COVERAGE] = service.lookups
        service.client.observe = setup_metrics(app, _claim_summary(service)).observe_nhso

        def forget_coverage(event: Event) -> None:
            # Coverage is looked up afresh for the next card; removal events carry no pid.
            if event.type in ("card.removed", "reader.removed"):
                service.lookups.forget_coverage()

        events.add_listener(forget_coverage)
    else:
        setup_metrics(app)
    if coverage is not None:
        app[COVERAGE] = coverage
    mount_lan(app, lan if lan is not None else lan_from_settings())
    app[ALLOW_ORIGIN] = lambda origin: allow_origin(origin, config)
    return app


def _nhso_service(parts: NhsoParts, events: EventBus) -> NhsoService:
    settings, problem = resolve_settings(parts.settings)

    def publish(type_: str, payload: dict[str, Any]) -> None:
        # Claim events (claim.queued/sent/failed/due) reach /v1/events clients and the tray.
        events.publish(type_, None, **payload)

    service = NhsoService(settings, token_store=parts.token_store, publish=publish)
    service.settings_error = problem
    return service


def _claim_summary(service: NhsoService) -> ClaimSummary:
    """What /metrics shows of the outbox: counts by state, oldest unsent, flagged due."""

    async def summary() -> dict[str, Any]:
        if not service.outbox.is_open:
            return {}
        oldest, due = await service.outbox.unsent_summary()
        return {"counts": await service.outbox.counts(), "oldest": oldest, "due": due}

    return summary


async def _card_service_ctx(app: web.Application) -> AsyncIterator[None]:
    cards = app[CARD_SERVICE]
    await cards.start()
    log.info("card service started (%s backend, %d readers)", cards.backend_kind,
             len(cards.reader_names()))
    yield
    await cards.stop()


@dataclass
class RunningServer:
    runner: web.AppRunner
    app: web.Application
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def cards(self) -> CardService:
        return self.app[CARD_SERVICE]

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_server(config: Config, *, backend: ReaderBackend | None = None,
                       nhso: NhsoParts | None = FROM_SETTINGS_FILES,
                       limits: ServerLimits | None = None) -> RunningServer:
    """Bind first (fail fast when the port is taken), then build and start the agent.

    Both loopback addresses where the machine has IPv6 loopback (``agent/api/server.py``);
    slow and idle connections cut and the sockets capped (``agent/api/limits.py``).
    The tray runs this in its worker thread's loop; ``serve`` wraps it.
    """
    limits = limits or ServerLimits()
    listening = bind_sockets(config.port)
    try:
        app = build_app(config, backend=backend, nhso=nhso,
                        loopback_v6=listening.loopback_v6, limits=limits)
        # The idle keep-alive limit is also how long a request head may take to arrive:
        # aiohttp closes a connection still waiting for a whole head when it runs out.
        runner = web.AppRunner(app, handle_signals=False, access_log=logging.getLogger(
            "aiohttp.access"), access_log_class=AccessLogWithoutRefusals,
            keepalive_timeout=limits.head_timeout, logger=server_logger(),
            # After an answer that did not read the whole body (a 408, a 413), the rest is
            # drained this long at most, then the connection is closed.
            lingering_time=limits.body_timeout, shutdown_timeout=2.0)
        await runner.setup()
        gate = ConnectionGate(app[CLIENT_LIMITS],
                              limits.connections(osroom.current().open_files_limit()))
        for sock in listening.sockets:
            await GatedSockSite(runner, sock, gate).start()
    except BaseException:
        listening.close()
        raise
    return RunningServer(runner, app, listening.port)


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
    kind = server.cards.backend_kind
    log.info("Thai Card Agent listening on %s (%s backend)", server.url, kind)
    print(f"Thai Card Agent {__version__}: {server.url}/ ({kind} reader)", file=sys.stderr,
          flush=True)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await server.stop()
