"""The agent's event bus and the one table of event types.

The bus belongs to the application (``agent.assembly`` makes one): the card core and the
NHSO service both publish to it; the WebSocket and the tray read it. Every type is in
``EVENT_TABLE`` (like errors in ``errors.ERROR_TABLE``): publishing an unknown type is a
programming error, and docs/integration.md and the OpenAPI document list the same table.

Publishing never blocks: a subscriber that falls too far behind is closed (it reconnects
and gets a fresh snapshot) rather than slowing the readers or growing memory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

EVENT_VERSION = 1
QUEUE_LIMIT = 256


@dataclass(frozen=True)
class EventInfo:
    type: str
    source: str                  # who publishes it: core, nhso, api (the guard), or the WebSocket
    payload: tuple[str, ...]     # keys beside the envelope's v/type/seq/time/reader
    description: str


_EVENTS = (
    EventInfo("reader.added", "core", ("readers",), "A reader appeared; all reader names."),
    EventInfo("reader.removed", "core", ("readers",), "A reader went away; all reader names."),
    EventInfo("card.inserted", "core", ("atr",), "A card is in; its read starts."),
    EventInfo("card.read", "core", ("card", "photo_pending"),
              "The card's text fields (as /v1 card); the photo may still be coming."),
    EventInfo("card.photo", "core", ("photo", "size", "format", "error"),
              "The photo (base64 JPEG), or photo null and error."),
    EventInfo("card.removed", "core", (), "The card left; forget what was shown."),
    EventInfo("card.error", "core", ("code", "message", "message_th", "detail"),
              "The read failed (e.g. not_thai_id, apdu_failed, card_removed)."),
    EventInfo("pcsc.available", "core", ("code",), "The PC/SC service answers."),
    EventInfo("pcsc.unavailable", "core", ("code",), "The PC/SC service is gone."),
    EventInfo("reader.error", "core", ("code",), "The reader monitor failed; it retries."),
    EventInfo("claim.queued", "nhso", ("id", "transactionId", "status"),
              "A claim is on disk in the outbox."),
    EventInfo("claim.sent", "nhso", ("id", "transactionId", "status", "authenCode", "seq",
                                      "recovered"), "NHSO recorded the claim."),
    EventInfo("claim.failed", "nhso", ("id", "transactionId", "status", "error", "message"),
              "NHSO refused the claim; it is not sent again unless retried."),
    EventInfo("claim.needs_review", "nhso",
              ("id", "transactionId", "status", "reason", "candidates"),
              "NHSO's records could not tell whether this claim is there: nothing is sent "
              "until staff choose (send again, or take a listed code)."),
    EventInfo("nhso.token", "nhso", ("state", "since", "message", "action_en", "action_th"),
              "NHSO started or stopped refusing the hospital's token (state refused, "
              "accepted or unchecked)."),
    EventInfo("claim.due", "nhso", ("id", "transactionId", "status", "serviceDate", "error"),
              "A claim of the day is still unsent after the due time."),
    EventInfo("visit.registered", "nhso", ("id", "transactionId", "status", "label",
                                            "serviceDate", "claimId"),
              "A visit waits for the patient's card (no citizen id in the event)."),
    EventInfo("visit.confirmed", "nhso", ("id", "transactionId", "status", "label",
                                           "serviceDate", "claimId"),
              "The patient's card confirmed a visit; its claim (claimId) is in the outbox."),
    EventInfo("visit.expired", "nhso", ("id", "transactionId", "status", "label",
                                         "serviceDate", "claimId"),
              "A visit's Bangkok service day ended before the patient confirmed it."),
    EventInfo("visit.due", "nhso", ("id", "transactionId", "status", "label", "serviceDate",
                                     "claimId"),
              "A visit of the day is still unconfirmed after the due time."),
    EventInfo("access.refused", "api", ("kind", "source", "reason", "count", "first", "last",
                                        "path"),
              "The first refused request from an origin (kind origin) or a LAN peer (kind "
              "lan): why a page or HIS says it cannot reach the agent. Once per source."),
    EventInfo("snapshot", "ws", ("agent", "backend", "pcsc", "readers", "filters"),
              "Every reader (and its card) on connect or on request."),
    EventInfo("heartbeat", "ws", (), "Nothing happened for heartbeatInterval seconds."),
    EventInfo("subscribed", "ws", ("filters",), "The filters now in force."),
    EventInfo("pong", "ws", ("id",), "The answer to ping."),
    EventInfo("error", "ws", ("code", "message", "message_th", "detail"),
              "A client message was refused."),
)
EVENT_TABLE: dict[str, EventInfo] = {e.type: e for e in _EVENTS}
# Messages of the WebSocket itself: a client gets them whatever its filters.
CONTROL_TYPES = frozenset(t for t, e in EVENT_TABLE.items() if e.source == "ws")


@dataclass(frozen=True)
class Event:
    type: str
    reader: str | None
    payload: dict[str, Any]
    seq: int
    time: str

    def envelope(self) -> dict[str, Any]:
        return {"v": EVENT_VERSION, "type": self.type, "seq": self.seq, "time": self.time,
                "reader": self.reader, **self.payload}


@dataclass(eq=False)
class Subscription:
    queue: asyncio.Queue[Event | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    closed: bool = False

    async def get(self) -> Event | None:
        """The next event, or None once the bus dropped this subscriber."""
        if self.closed and self.queue.empty():
            return None
        return await self.queue.get()


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []
        self._seq = itertools.count(1)
        self.last_seq = 0

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Called in the loop for every event, before the subscribers get it."""
        self._listeners.append(listener)

    def subscribe(self) -> Subscription:
        sub = Subscription()
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, type_: str, reader: str | None = None, **payload: Any) -> Event:
        info = EVENT_TABLE.get(type_)
        if info is None or type_ in CONTROL_TYPES:
            raise ValueError(f"{type_!r} is not a bus event of events.EVENT_TABLE")
        unknown = set(payload).difference(info.payload)
        if unknown:
            raise ValueError(f"{type_}: payload keys {sorted(unknown)} are not in EVENT_TABLE")
        self.last_seq = next(self._seq)
        event = Event(type_, reader, payload, self.last_seq,
                      dt.datetime.now().astimezone().isoformat(timespec="milliseconds"))
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed for %s", type_)
        for sub in list(self._subs):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("event subscriber too slow; dropping it")
                self._drop(sub)
        return event

    def _drop(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        sub.closed = True
        # Make room for the end marker so a waiting reader wakes up and sees the close.
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    def close(self) -> None:
        for sub in list(self._subs):
            self._drop(sub)
