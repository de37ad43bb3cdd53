"""The web room: every HTTP and WebSocket route of the agent, on an app the assembly made.

``agent.assembly`` builds the application (state in ``keys.py``, the card service, the
NHSO room) and calls ``setup_web``; nothing here builds readers or services.
"""

from __future__ import annotations

import weakref
from typing import Any

from aiohttp import web

from .compat import setup_compat
from .keys import CLIENT_LIMITS, EVENTS, REFUSAL_SUMMARY, REFUSALS, WEBSOCKETS
from .limits import ClientLimits
from .openapi import setup_openapi
from .origins import setup_origins
from .pages import setup_pages
from .refusal_summary import RefusalSummary
from .refusals import RefusalLog
from .security import MAX_BODY, guard
from .v1 import setup_v1
from .ws import setup_ws


def new_web_app() -> web.Application:
    """An empty application with the guard (Host/Origin checks, body rules) in front."""
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[REFUSAL_SUMMARY] = RefusalSummary()
    app[CLIENT_LIMITS] = ClientLimits()

    async def close_refusals(app: web.Application) -> None:
        app[REFUSAL_SUMMARY].close()          # the last minute's summary

    app.on_cleanup.append(close_refusals)
    return app


def setup_web(app: web.Application) -> None:
    """The routes: status page, NHSO-compatible API, /v1, the event WebSocket, OpenAPI."""
    app[WEBSOCKETS] = weakref.WeakSet()
    events = app.get(EVENTS)

    def publish(type_: str, payload: dict[str, Any]) -> None:
        if events is not None:
            events.publish(type_, None, **payload)

    app[REFUSALS] = RefusalLog(publish)
    setup_pages(app)
    setup_compat(app)
    setup_v1(app)
    setup_origins(app)
    setup_ws(app)
    setup_openapi(app)
