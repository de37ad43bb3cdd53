"""The agent's event bus: versioned envelopes fanned out to any number of subscribers.

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
        self.last_seq = next(self._seq)
        event = Event(type_, reader, payload, self.last_seq,
                      dt.datetime.now().astimezone().isoformat(timespec="milliseconds"))
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken listener must not stop the events
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
