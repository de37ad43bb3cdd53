"""Typed application state (``web.AppKey``): everything the handlers share lives here."""

from __future__ import annotations

import weakref
from aiohttp import web

from ..config import Config
from ..core import CardService

CONFIG = web.AppKey("config", Config)
CARD_SERVICE = web.AppKey("card_service", CardService)
# Open WebSockets, closed with "going away" on shutdown.
WEBSOCKETS = web.AppKey("websockets", weakref.WeakSet)
# OpenAPI paths and schemas that extensions (the NHSO routes) add to the document.
OPENAPI_EXTRA = web.AppKey("openapi_extra", dict)
# The NHSO service when ``agent.nhso`` is installed: ``coverage_for(pid)`` and token state.
COVERAGE = web.AppKey("coverage", object)

__all__ = ["CONFIG", "CARD_SERVICE", "WEBSOCKETS", "OPENAPI_EXTRA", "COVERAGE"]
