"""The application factory: one process, one CardService owning the readers."""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..config import Config
from ..core import CardService
from ..events import Event
from ..nhso.routes import NHSO_SERVICE, setup_nhso
from ..readers.base import ReaderBackend
from ..readers.factory import make_backend
from .compat import setup_compat
from .keys import CARD_SERVICE, CONFIG, COVERAGE, WEBSOCKETS
from .openapi import document_nhso, setup_openapi
from .pages import setup_pages
from .security import MAX_BODY, guard
from .v1 import setup_v1
from .ws import setup_ws

log = logging.getLogger(__name__)


async def _card_service_ctx(app: web.Application) -> AsyncIterator[None]:
    service = app[CARD_SERVICE]
    await service.start()
    log.info("card service started (%s backend, %d readers)", service.backend.kind,
             len(service.slots))
    yield
    await service.stop()


def _setup_extensions(app: web.Application, config: Config) -> None:
    """The NHSO routes (claims, nhso-service compat) and the coverage lookup."""
    events = app[CARD_SERVICE].events

    def publish(type_: str, payload: dict[str, Any]) -> None:
        # Claim events (claim.queued/sent/failed/due) reach /v1/events clients and the tray.
        events.publish(type_, None, **payload)

    setup_nhso(app, None, publish=publish)    # NHSO settings have their own file (nhso.json)
    nhso = app[NHSO_SERVICE]
    app[COVERAGE] = nhso

    def forget_coverage(event: Event) -> None:
        # Coverage is looked up afresh for the next card; removal events carry no pid.
        if event.type in ("card.removed", "reader.removed"):
            nhso.forget_coverage()

    events.add_listener(forget_coverage)
    document_nhso(app)


def create_app(config: Config | None = None, *, backend: ReaderBackend | None = None,
               extensions: bool = True) -> web.Application:
    """The agent's web application; the caller binds it (``server.serve``) or tests it."""
    config = config or Config()
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[CONFIG] = config
    service = CardService(backend if backend is not None else make_backend(config.backend),
                          default_reader=config.default_terminal,
                          read_photo=config.read_photo, read_timeout=config.read_timeout)
    app[CARD_SERVICE] = service
    app[WEBSOCKETS] = weakref.WeakSet()
    app.cleanup_ctx.append(_card_service_ctx)
    setup_pages(app)
    setup_compat(app)
    setup_v1(app)
    setup_ws(app)
    setup_openapi(app)
    if extensions:
        _setup_extensions(app, config)
    return app
