"""Our versioned API (``/v1``): every card field, raw and parsed, plus agent status.

The WebSocket (``/v1/events``) is in ``ws.py``; the OpenAPI document in ``openapi.py``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from .. import __version__
from ..card.session import CardRead
from ..core import DEMO_VARIANTS, ReaderView
from .compat import token_configured
from .keys import (
    CARD_SERVICE,
    CONFIG,
    COVERAGE,
    EVENTS,
    LAN_STATUS,
    REFUSAL_SUMMARY,
    REFUSALS,
    WEBSOCKETS,
)
from .query import query_flag
from .responses import error, json_response
from .security import read_json

STARTED_AT = web.AppKey("started_at", dt.datetime)


def card_payload(slot: ReaderView, card: CardRead, *, photo: bool) -> dict[str, Any]:
    return {"reader": slot.name, "status": slot.status,
            "read_at": slot.read_at.isoformat(timespec="milliseconds") if slot.read_at else None,
            "card": card.to_json(photo_b64=photo)}


async def status(request: web.Request) -> web.Response:
    app = request.app
    cards = app[CARD_SERVICE].status()
    return json_response({
        "name": "thaicard-agent",
        "version": __version__,
        "started_at": app[STARTED_AT].isoformat(timespec="seconds"),
        "uptime_s": cards["uptime_s"],
        "backend": cards["backend"],
        "pcsc": cards["pcsc"],
        "readers": cards["readers"],
        "reads": cards["reads"],
        "events": {"clients": len(app[WEBSOCKETS]), "last_seq": app[EVENTS].last_seq},
        # Requests the guard refused since start (bad Host/Origin, scope, caps): support
        # sees a misconfigured page here without reading the log.
        "refused": app[REFUSAL_SUMMARY].total,
        "nhso": {"available": app.get(COVERAGE) is not None,
                 "tokenConfigured": await token_configured(app),
                 # "refused" at once when NHSO says "Invalid token.", with what to do.
                 "token": (coverage.token_health() if (coverage := app.get(COVERAGE))
                           else None)},
        "config": app[CONFIG].public_view(),
        "refusals": app[REFUSALS].view() if REFUSALS in app else {"counts": {}, "recent": []},
        "lan": app[LAN_STATUS].view() if LAN_STATUS in app else {"enabled": False},
    })


async def readers(request: web.Request) -> web.Response:
    return json_response({"readers": request.app[CARD_SERVICE].readers()})


async def _card(request: web.Request, name: str | None) -> web.Response:
    service = request.app[CARD_SERVICE]
    photo = query_flag(request, "photo")
    # The opt-in applets: read once per insertion when a caller first asks for them.
    nhso, laser = query_flag(request, "nhso"), query_flag(request, "laser")
    slot, card = await service.get_card(name, photo=photo, nhso=nhso, laser=laser)
    return json_response(card_payload(slot, card, photo=photo))


async def default_card(request: web.Request) -> web.Response:
    return await _card(request, None)


async def reader_card(request: web.Request) -> web.Response:
    return await _card(request, request.match_info["name"])


async def reader_photo(request: web.Request) -> web.Response:
    service = request.app[CARD_SERVICE]
    if not service.read_photo:
        raise error("photo_unavailable", "photo reading is turned off (readPhoto=false)")
    _slot, card = await service.get_card(request.match_info["name"], photo=True)
    if card.photo is None:
        raise error("photo_unavailable",
                    card.photo_error.code if card.photo_error is not None else None)
    return web.Response(body=card.photo, content_type="image/jpeg")


# -- demo mode: let web developers insert and remove fake cards ----------------------------
def _demo_reader(name: Any) -> str | None:
    if name is not None and not isinstance(name, str):
        raise error("bad_request", "reader must be a string")
    return name


async def demo_insert(request: web.Request) -> web.Response:
    service = request.app[CARD_SERVICE]
    if not service.demo:
        raise error("not_found", "only in demo mode")
    body = await read_json(request)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise error("bad_request", "the body must be a JSON object")
    unknown = set(body) - {"reader", "variant"}
    if unknown:
        raise error("bad_request", f"unknown fields: {', '.join(sorted(unknown))}")
    variant = body.get("variant", 0)
    if not isinstance(variant, int) or isinstance(variant, bool) or \
            not 0 <= variant < DEMO_VARIANTS:
        raise error("bad_request", f"variant must be an integer 0-{DEMO_VARIANTS - 1}")
    reader = service.demo_insert(_demo_reader(body.get("reader")), variant)
    return json_response({"reader": reader, "inserted": True, "variant": variant},
                         status=202)


async def demo_remove(request: web.Request) -> web.Response:
    reader = request.app[CARD_SERVICE].demo_remove(request.query.get("reader"))
    return json_response({"reader": reader, "removed": True}, status=202)


def setup_v1(app: web.Application) -> None:
    app[STARTED_AT] = dt.datetime.now().astimezone()
    app.router.add_get("/v1/status", status)
    app.router.add_get("/v1/readers", readers)
    app.router.add_get("/v1/card", default_card)
    app.router.add_get("/v1/readers/{name}/card", reader_card)
    app.router.add_get("/v1/readers/{name}/photo", reader_photo)
    app.router.add_post("/v1/demo/card", demo_insert)
    app.router.add_delete("/v1/demo/card", demo_remove)

