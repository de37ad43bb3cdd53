"""Typed application state (``web.AppKey``) and the seams the API sees of other rooms.

Everything the handlers share lives here. ``agent.assembly`` fills these keys; handlers
only read them. The API knows the NHSO room only through ``CoverageLookup``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from ..config import Config
from ..core import CardService
from ..events import EventBus
from .limits import ClientLimits
from .refusal_summary import RefusalSummary
from .refusals import REFUSALS


class CoverageLookup(Protocol):
    """What ``/api/smartcard/read`` needs from NHSO (``agent.nhso.service.NhsoService``)."""

    async def token_configured(self) -> bool | None:
        """True/False; None when the keyring cannot be asked."""

    async def coverage_for(self, pid: str) -> dict[str, Any] | None:
        """The flat coverage fields; None when no token is set; AgentError on failure."""

    def token_health(self) -> dict[str, Any]:
        """What NHSO last said of the token (``state`` refused / accepted / unchecked, with
        what to do), for /v1/status."""


CONFIG = web.AppKey("config", Config)
# The application's event bus: the card core and the NHSO service publish to it.
EVENTS = web.AppKey("events", EventBus)
CARD_SERVICE = web.AppKey("card_service", CardService)
# Open WebSockets, closed with "going away" on shutdown.
WEBSOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey(
    "websockets", weakref.WeakSet)
# OpenAPI paths and schemas that other rooms (the NHSO routes) add to the document.
OPENAPI_EXTRA = web.AppKey("openapi_extra", dict)
# The NHSO coverage lookup when the NHSO room is mounted.
COVERAGE = web.AppKey("coverage", CoverageLookup)
# Refused requests (origins, LAN peers): counted, the first per source published
# (``REFUSALS``, defined beside its type in refusals.py).


class LanStatus(Protocol):
    """What /v1/status shows of the LAN listener (``agent.lan``), when there is one."""

    def view(self) -> dict[str, Any]:
        """Enabled, addresses listened on, problems; no key."""


LAN_STATUS = web.AppKey("lan_status", LanStatus)
# Writes an origin into the user's allowedOrigins (the assembly's use case); returns the file.
ALLOW_ORIGIN: web.AppKey[Callable[[str], Path]] = web.AppKey("allow_origin")


# Whether the agent also holds [::1]:PORT (the assembly says; unset: assumed, as in tests).
LOOPBACK_V6 = web.AppKey("loopback_v6", bool)
# Refused requests, counted per caller and minute for the log (refusal_summary.py).
REFUSAL_SUMMARY = web.AppKey("refusal_summary", RefusalSummary)
# Requests and WebSockets in progress per caller.
CLIENT_LIMITS = web.AppKey("client_limits", ClientLimits)

__all__ = ["ALLOW_ORIGIN", "CARD_SERVICE", "CLIENT_LIMITS", "CONFIG", "COVERAGE", "EVENTS",
           "LAN_STATUS", "LOOPBACK_V6", "OPENAPI_EXTRA", "REFUSALS", "REFUSAL_SUMMARY",
           "WEBSOCKETS", "CoverageLookup", "LanStatus"]
