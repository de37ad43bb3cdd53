"""``GET /v1/events``: the event stream over a WebSocket.

Every message is a JSON envelope ``{v, type, seq, time, reader, ...payload}`` (``v`` = 1).
On connect the client gets a ``snapshot`` (every reader, with the card when one is read),
then the bus's events as they happen, and a ``heartbeat`` when nothing happened for
``heartbeatInterval`` seconds. ``seq`` is the bus's sequence number: a snapshot and a
heartbeat carry the last one, so a gap tells a client it missed something.

Per-client filters (query string at connect, or a ``subscribe`` message later):
``types`` (``card.read``, or a prefix pattern ``card.*``), ``readers`` (names) and
``photo`` (``false``: no ``card.photo`` events and no photo in snapshots).
Client messages: ``subscribe``, ``snapshot``, ``ping``. See docs/integration.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from .. import __version__
from ..errors import AgentError, ScopeDenied
from ..events import CONTROL_TYPES, EVENT_VERSION, Event
from ..scopes import ALL_SCOPES
from . import strict_json
from .access import GRANTED
from .keys import CARD_SERVICE, CONFIG, EVENTS, WEBSOCKETS
from .query import parse_flag
from .responses import dumps, error, public_text

log = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024
MAX_FILTER_ITEMS = 32
TYPE_PATTERN = re.compile(r"^[a-z]+(\.[a-z_]+)?(\.\*)?$|^[a-z]+\.\*$|^\*$")
CLOSE_TOO_SLOW = WSCloseCode.TRY_AGAIN_LATER        # 1013: reconnect and take a new snapshot

ENCODED = web.AppKey("encoded_events", OrderedDict)
ENCODED_KEEP = 64


@dataclass(frozen=True)
class Filters:
    types: tuple[str, ...] = ()        # empty: every type
    readers: tuple[str, ...] = ()      # empty: every reader
    photo: bool = True

    def wants(self, type_: str, reader: str | None) -> bool:
        if type_ in CONTROL_TYPES:
            return True
        if type_ == "card.photo" and not self.photo:
            return False
        if self.readers and reader is not None and reader not in self.readers:
            return False
        if not self.types:
            return True
        return any(t == "*" or t == type_ or (t.endswith(".*") and type_.startswith(t[:-1]))
                   for t in self.types)

    def to_json(self) -> dict[str, Any]:
        return {"types": list(self.types), "readers": list(self.readers), "photo": self.photo}


def _string_list(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise error("bad_request", f"{what} must be a list of strings")
    if len(value) > MAX_FILTER_ITEMS:
        raise error("bad_request", f"{what}: at most {MAX_FILTER_ITEMS} items")
    return tuple(v.strip() for v in value)


def update_filters(base: Filters, data: Mapping[str, Any]) -> Filters:
    """``base`` with the keys present in ``data`` replaced; AgentError(bad_request) if invalid."""
    changes: dict[str, Any] = {}
    if "types" in data:
        types = _string_list(data["types"], "types")
        bad = [t for t in types if not TYPE_PATTERN.fullmatch(t)]
        if bad:
            raise error("bad_request", f"types: not an event type or pattern: {bad[0][:40]!r}")
        changes["types"] = types
    if "readers" in data:
        changes["readers"] = _string_list(data["readers"], "readers")
    if "photo" in data:
        changes["photo"] = parse_flag(data["photo"], "photo")
    return replace(base, **changes)


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="milliseconds")


def control(app: web.Application, type_: str, **payload: Any) -> dict[str, Any]:
    return {"v": EVENT_VERSION, "type": type_, "seq": app[EVENTS].last_seq,
            "time": _now(), "reader": None, **payload}


def snapshot(app: web.Application, filters: Filters) -> dict[str, Any]:
    cards = app[CARD_SERVICE]
    return control(app, "snapshot", agent={"name": "thaicard-agent", "version": __version__},
                   backend=cards.backend_kind,
                   pcsc=cards.pcsc_status(),
                   readers=cards.readers_with_cards(filters.readers, photo=filters.photo),
                   filters=filters.to_json())


def error_message(app: web.Application, exc: AgentError) -> dict[str, Any]:
    body = exc.to_dict()
    if body.get("detail"):                     # as in HTTP error bodies: no folders, bounded
        body["detail"] = public_text(str(body["detail"]))
    return control(app, "error", **body)


def encoded(app: web.Application, event: Event) -> str:
    """Each event is serialised once, however many clients receive it."""
    cache = app[ENCODED]
    text = cache.get(event.seq)
    if text is None:
        text = dumps(event.envelope())
        cache[event.seq] = text
        while len(cache) > ENCODED_KEEP:
            cache.popitem(last=False)
    return text


class Connection:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse, filters: Filters, *,
                 may_photo: bool = True):
        self.app = request.app
        self.ws = ws
        self.filters = filters
        self.may_photo = may_photo

    async def send(self, data: dict[str, Any] | str) -> None:
        await self.ws.send_str(data if isinstance(data, str) else dumps(data))

    async def pump(self) -> None:
        """Bus -> client, with heartbeats; ends when the client or the bus goes away."""
        bus = self.app[EVENTS]
        interval = self.app[CONFIG].heartbeat_interval
        sub = bus.subscribe()
        try:
            await self.send(snapshot(self.app, self.filters))
            while not self.ws.closed:
                try:
                    event = await asyncio.wait_for(sub.get(), interval)
                except TimeoutError:
                    await self.send(control(self.app, "heartbeat"))
                    continue
                if event is None:            # the bus dropped us (too slow) or is closing
                    await self.ws.close(code=CLOSE_TOO_SLOW, message=b"reconnect")
                    return
                if self.filters.wants(event.type, event.reader):
                    await self.send(encoded(self.app, event))
        except (ConnectionError, RuntimeError):
            return                           # the client left while we were sending
        finally:
            bus.unsubscribe(sub)

    async def handle(self, text: str) -> None:
        try:
            message = strict_json.loads(text)
        except AgentError as exc:
            await self.send(error_message(self.app, exc))
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.send(error_message(
                self.app, error("bad_request", "a message is a JSON object with a type")))
            return
        kind = message["type"]
        try:
            if kind == "subscribe":
                filters = update_filters(self.filters, message)
                if filters.photo and not self.may_photo:
                    raise ScopeDenied("needs the scope photo")
                self.filters = filters
                await self.send(control(self.app, "subscribed", filters=self.filters.to_json()))
            elif kind == "snapshot":
                await self.send(snapshot(self.app, self.filters))
            elif kind == "ping":
                pong = message.get("id")
                await self.send(control(self.app, "pong", id=pong if isinstance(
                    pong, (str, int, float)) or pong is None else None))
            else:
                raise error("bad_request", f"unknown message type {kind[:40]!r}")
        except AgentError as exc:
            await self.send(error_message(self.app, exc))

    async def handle_safely(self, text: str) -> None:
        """One message; whatever it holds, the client gets an answer and stays connected."""
        try:
            await self.handle(text)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - a message must never drop the socket
            log.error("WebSocket message failed: %s", type(exc).__name__)
            await self.send(error_message(self.app, error("internal_error")))


async def events(request: web.Request) -> web.StreamResponse:
    filters = update_filters(Filters(), request.query)
    # A page without the photo scope gets no photo, whatever it subscribes to.
    may_photo = "photo" in request.get(GRANTED, ALL_SCOPES)
    if not may_photo:
        filters = replace(filters, photo=False)
    interval = request.app[CONFIG].heartbeat_interval
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=interval * 2)
    if not ws.can_prepare(request).ok:
        raise error("bad_request", "this endpoint is a WebSocket (send an Upgrade request)")
    await ws.prepare(request)
    request.app[WEBSOCKETS].add(ws)
    conn = Connection(request, ws, filters, may_photo=may_photo)
    pump = asyncio.create_task(conn.pump(), name="ws pump")
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await conn.handle_safely(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await conn.send(error_message(
                    request.app, error("bad_request", "send JSON text messages")))
    except (ConnectionError, RuntimeError):
        pass
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        request.app[WEBSOCKETS].discard(ws)
    return ws


async def close_all(app: web.Application) -> None:
    """On shutdown: tell every client the agent is going away (they reconnect later)."""
    sockets = app[WEBSOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"agent stopping")


def setup_ws(app: web.Application) -> None:
    app[ENCODED] = OrderedDict()
    app.router.add_get("/v1/events", events)
    app.on_shutdown.append(close_all)
