"""The core: per-reader state, one read per insertion, the card cache, and events.

The API layer asks this module; it never touches PC/SC. Each insertion is read once
(text fields first, photo after) and cached until removal; any number of callers share
that read, and a removal clears the cache at once so no stale card is ever served.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .card.session import CardRead, card_generation, read_card
from .errors import (AgentError, CardRemoved, NoCard, NoReader, NotThaiIdCard,
                     PcscUnavailable, ReaderNotFound, ReadTimeout)
from .events import EventBus
from .monitor import ReaderMonitor
from .readers.base import ReaderBackend, ReaderEvent

log = logging.getLogger(__name__)

DEFAULT_READ_TIMEOUT = 20.0
FIRST_SCAN_TIMEOUT = 5.0
# Errors that a new attempt cannot fix while the same card stays in.
FINAL_ERRORS = (NotThaiIdCard,)


@dataclass
class ReaderSlot:
    name: str
    present: bool = False
    atr: bytes | None = None
    status: str = "empty"            # empty | reading | ready | error
    insertion: int = 0               # bumps on every insertion and removal
    card: CardRead | None = None     # text fields (photo may still be coming)
    photo_done: bool = False
    error: AgentError | None = None
    inserted_at: float | None = None  # monotonic
    read_at: dt.datetime | None = None
    text_ready: asyncio.Future[CardRead] | None = None
    photo_ready: asyncio.Future[CardRead] | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name, "present": self.present, "status": self.status,
            "atr": self.atr.hex(" ").upper() if self.atr else None,
            "generation": card_generation(self.atr) if self.atr else None,
            "photo": self.photo_done and self.card is not None and self.card.photo is not None,
            "error": self.error.to_dict() if self.error else None,
        }


def photo_payload(card: CardRead) -> dict[str, Any]:
    if card.photo is None:
        return {"photo": None, "error": card.photo_error.to_dict() if card.photo_error else None}
    return {"photo": base64.b64encode(card.photo).decode(), "size": len(card.photo),
            "format": "image/jpeg"}


class CardService:
    def __init__(self, backend: ReaderBackend, *, default_reader: str | None = None,
                 read_photo: bool = True, read_timeout: float = DEFAULT_READ_TIMEOUT) -> None:
        self.backend = backend
        self.default_reader = default_reader
        self.read_photo = read_photo
        self.read_timeout = read_timeout
        self.events = EventBus()
        self.slots: dict[str, ReaderSlot] = {}
        self.pcsc_available: bool | None = None
        self.pcsc_error: str | None = None
        self.reads = 0
        self.started_at = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first_scan: asyncio.Event | None = None
        self._monitor: ReaderMonitor | None = None

    # -- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._first_scan = asyncio.Event()
        self._monitor = ReaderMonitor(self.backend, self._from_monitor)
        self._monitor.start()
        # Answer the first requests with the real readers, not an empty list.
        try:
            await asyncio.wait_for(self._first_scan.wait(), FIRST_SCAN_TIMEOUT)
        except TimeoutError:
            log.warning("no reader scan within %.0f s of start", FIRST_SCAN_TIMEOUT)

    async def stop(self) -> None:
        if self._monitor is not None:
            await asyncio.to_thread(self._monitor.stop)
        for slot in self.slots.values():
            if slot.task is not None:
                slot.task.cancel()
        tasks = [s.task for s in self.slots.values() if s.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        self.events.close()
        await asyncio.to_thread(self.backend.close)

    def _from_monitor(self, event: ReaderEvent) -> None:
        """Called in the monitor thread: hand the event to the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_reader_event, event)

    # -- reader events -----------------------------------------------------------------
    def _on_reader_event(self, ev: ReaderEvent) -> None:
        log.info("reader event %s %s", ev.kind, ev.reader)
        if ev.kind == "reader_added":
            self.slots.setdefault(ev.reader, ReaderSlot(ev.reader))
            self.events.publish("reader.added", ev.reader, readers=self.reader_names())
        elif ev.kind == "reader_removed":
            slot = self.slots.pop(ev.reader, None)
            if slot is not None:
                self._clear(slot, CardRemoved("reader removed"))
            self.events.publish("reader.removed", ev.reader, readers=self.reader_names())
        elif ev.kind == "card_inserted":
            slot = self.slots.setdefault(ev.reader, ReaderSlot(ev.reader))
            self._clear(slot, CardRemoved("card replaced"))
            slot.present, slot.atr = True, ev.atr
            slot.inserted_at = time.monotonic()
            self.events.publish("card.inserted", ev.reader,
                                atr=ev.atr.hex(" ").upper() if ev.atr else None)
            self._start_read(slot)
        elif ev.kind == "card_removed":
            slot = self.slots.get(ev.reader)
            if slot is not None and slot.present:
                self._clear(slot, CardRemoved())
                self.events.publish("card.removed", ev.reader)
        elif ev.kind in ("pcsc_unavailable", "pcsc_available"):
            self.pcsc_available = ev.kind == "pcsc_available"
            self.pcsc_error = ev.error or None
            self.events.publish("pcsc." + ev.kind.split("_")[1], None,
                                code=ev.error or None)
        elif ev.kind == "scanned":
            if self._first_scan is not None:
                self._first_scan.set()
        elif ev.kind == "monitor_error":
            self.events.publish("reader.error", None, code=ev.error or "internal_error")

    def _clear(self, slot: ReaderSlot, reason: AgentError) -> None:
        """Forget the card at once; waiters of this insertion get ``reason``."""
        slot.insertion += 1
        for fut in (slot.text_ready, slot.photo_ready):
            if fut is not None and not fut.done():
                fut.set_exception(reason)
                fut.exception()          # retrieved: no "never retrieved" warnings
        if slot.task is not None and not slot.task.done():
            slot.task.cancel()           # the thread ends on its own at the next APDU
        slot.present, slot.atr, slot.status = False, None, "empty"
        slot.card, slot.photo_done, slot.error, slot.read_at = None, False, None, None
        slot.text_ready = slot.photo_ready = None
        slot.task = None

    # -- reading -----------------------------------------------------------------------
    def _start_read(self, slot: ReaderSlot) -> None:
        loop = asyncio.get_running_loop()
        slot.status, slot.error = "reading", None
        slot.text_ready, slot.photo_ready = loop.create_future(), loop.create_future()
        slot.task = loop.create_task(self._read(slot, slot.insertion),
                                     name=f"read {slot.name}")

    async def _read(self, slot: ReaderSlot, insertion: int) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()

        def current() -> bool:
            return slot.insertion == insertion and self.slots.get(slot.name) is slot

        def text_arrived(card: CardRead) -> None:
            if not current():
                return
            slot.card, slot.read_at = card, dt.datetime.now().astimezone()
            if slot.text_ready is not None and not slot.text_ready.done():
                slot.text_ready.set_result(card)
            self.events.publish("card.read", slot.name, card=card.to_json(),
                                photo_pending=self.read_photo)

        def work() -> CardRead:
            with self.backend.connect(slot.name) as channel:
                return read_card(channel.transmit, channel.atr or slot.atr or b"",
                                 photo=self.read_photo,
                                 on_text=lambda c: loop.call_soon_threadsafe(text_arrived, c))

        try:
            card = await asyncio.to_thread(work)
        except asyncio.CancelledError:
            raise
        except AgentError as exc:
            self._read_failed(slot, insertion, exc)
            return
        except Exception as exc:  # noqa: BLE001 - reported with a code, never a traceback to callers
            log.exception("card read failed unexpectedly")
            self._read_failed(slot, insertion, AgentError(type(exc).__name__))
            return
        await asyncio.sleep(0)   # let the text hand-off scheduled from the thread run first
        if not current():
            return
        self.reads += 1
        slot.card, slot.photo_done, slot.status = card, True, "ready"
        if slot.text_ready is not None and not slot.text_ready.done():
            slot.text_ready.set_result(card)
        if slot.photo_ready is not None and not slot.photo_ready.done():
            slot.photo_ready.set_result(card)
        log.info("card read on %s: %d APDUs in %.0f ms", slot.name, card.stats.apdus,
                 (time.monotonic() - started) * 1000)
        if self.read_photo:
            self.events.publish("card.photo", slot.name, **photo_payload(card))

    def _read_failed(self, slot: ReaderSlot, insertion: int, exc: AgentError) -> None:
        if slot.insertion != insertion:
            return
        log.warning("card read on %s failed: %s", slot.name, exc.code)
        slot.status, slot.error = "error", exc
        for fut in (slot.text_ready, slot.photo_ready):
            if fut is not None and not fut.done():
                fut.set_exception(exc)
                fut.exception()
        self.events.publish("card.error", slot.name, **exc.to_dict())

    # -- queries (the API's entry points) ----------------------------------------------
    def reader_names(self) -> list[str]:
        return list(self.slots)

    def readers(self) -> list[dict[str, Any]]:
        return [slot.info() for slot in self.slots.values()]

    def choose_reader(self, name: str | None = None) -> ReaderSlot:
        """The named reader; else the default; else the one with a card; else the first."""
        if self.pcsc_available is False and not self.slots:
            raise PcscUnavailable(self.pcsc_error)
        if not self.slots:
            raise NoReader()
        if name:
            if name not in self.slots:
                raise ReaderNotFound(name)
            return self.slots[name]
        if self.default_reader and self.default_reader in self.slots:
            return self.slots[self.default_reader]
        for slot in self.slots.values():
            if slot.present:
                return slot
        return next(iter(self.slots.values()))

    async def get_card(self, name: str | None = None, *, photo: bool = False,
                       timeout: float | None = None) -> tuple[ReaderSlot, CardRead]:
        """The cached card of a reader, waiting for the read in progress if needed."""
        slot = self.choose_reader(name)
        if not slot.present:
            raise NoCard(slot.name)
        if slot.status == "error" and not isinstance(slot.error, FINAL_ERRORS):
            self._start_read(slot)       # a transient failure: try once more on demand
        if slot.status == "error" and slot.error is not None:
            raise slot.error
        fut = slot.photo_ready if (photo and self.read_photo) else slot.text_ready
        assert fut is not None
        insertion = slot.insertion
        try:
            card = await asyncio.wait_for(asyncio.shield(fut),
                                          timeout if timeout is not None else self.read_timeout)
        except TimeoutError:
            raise ReadTimeout(slot.name) from None
        if slot.insertion != insertion:
            # Pulled out (or swapped) after the read ended but before this caller resumed:
            # never answer with a card that is no longer in the reader.
            raise CardRemoved(slot.name)
        return slot, card

    def pcsc_state(self) -> str:
        return {None: "starting", True: "available", False: "unavailable"}[self.pcsc_available]
