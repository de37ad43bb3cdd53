"""The core: per-reader state, one read per insertion, the card cache, and card events.

This is the only door to the readers: the API, the WebSocket, the tray and the CLI ask
``CardService`` (or ``pick_reader`` / ``read_once`` for one-shot commands) and never touch
a reader backend, PC/SC or the per-reader slots. Each insertion is read once (text fields
first, photo after) and cached until removal; any number of callers share that read, and
a removal clears the cache at once so no stale card is ever served. Card events go to the
application's event bus, which the NHSO service publishes to as well.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from .card.session import (
    AppletRead,
    CardRead,
    card_generation,
    read_card,
    read_optional_applets,
)
from .errors import (
    AgentError,
    ApduFailed,
    CardDataInvalid,
    CardRemoved,
    CardReset,
    NoCard,
    NoReader,
    NotFound,
    NotThaiIdCard,
    PcscUnavailable,
    ReaderNotFound,
    ReadInterrupted,
    ReadTimeout,
)
from .events import EventBus
from .monitor import ReaderMonitor
from .readers.base import ReaderBackend, ReaderEvent, ReaderState
from .readers.demo import DemoBackend, demo_card
from .readers.factory import make_backend

__all__ = ["DEMO_VARIANTS", "CardService", "ReaderBackend", "ReaderView",
           "list_readers", "open_backend", "pick_reader", "read_applets", "read_exclusive",
           "read_once"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_READ_TIMEOUT = 20.0
FIRST_SCAN_TIMEOUT = 5.0
# Errors that a new attempt cannot fix while the same card stays in.
FINAL_ERRORS = (NotThaiIdCard,)
DEMO_VARIANTS = 100


def _discard(_: object) -> None:
    """Swallow a value a callback must not return (the handle of a scheduled call)."""


def pick_reader(readers: Sequence[tuple[str, bool]], name: str | None = None,
                default: str | None = None) -> str:
    """The reader rule everywhere: the named one; else the configured default; else the
    one with a card; else the first. ``readers`` is (name, card present) in order."""
    if not readers:
        raise NoReader()
    names = [n for n, _ in readers]
    if name:
        if name not in names:
            raise ReaderNotFound(name)
        return name
    if default and default in names:
        return default
    return next((n for n, present in readers if present), names[0])


@dataclass(frozen=True)
class ReaderView:
    """What callers may know of a reader: a copy, never the live slot."""

    name: str
    present: bool
    status: str                      # empty | reading | ready | error
    read_at: dt.datetime | None


@dataclass
class ReaderSlot:
    name: str
    present: bool = False
    atr: bytes | None = None
    status: str = "empty"            # empty | reading | ready | error
    insertion: int = 0               # bumps on every insertion and removal
    card: CardRead | None = None     # text fields; the photo once it has been read
    error: AgentError | None = None
    inserted_at: float | None = None  # monotonic
    read_at: dt.datetime | None = None
    text_ready: asyncio.Future[CardRead] | None = None
    photo_ready: asyncio.Future[CardRead] | None = None
    applets: AppletRead = field(default_factory=AppletRead)   # opt-in applets, on request
    applets_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def view(self) -> ReaderView:
        return ReaderView(self.name, self.present, self.status, self.read_at)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name, "present": self.present, "status": self.status,
            "atr": self.atr.hex(" ").upper() if self.atr else None,
            "generation": card_generation(self.atr) if self.atr else None,
            "photo": self.card is not None and self.card.photo is not None,
            "error": self.error.to_dict() if self.error else None,
        }


def photo_payload(card: CardRead) -> dict[str, Any]:
    if card.photo is None:
        return {"photo": None, "error": card.photo_error.to_dict() if card.photo_error else None}
    return {"photo": base64.b64encode(card.photo).decode(), "size": len(card.photo),
            "format": "image/jpeg"}


class CardService:
    def __init__(self, backend: ReaderBackend, *, events: EventBus | None = None,
                 default_reader: str | None = None, read_photo: bool = True,
                 read_timeout: float = DEFAULT_READ_TIMEOUT) -> None:
        self._backend = backend
        self.default_reader = default_reader
        self.read_photo = read_photo
        self.read_timeout = read_timeout
        # The application's bus (shared with the NHSO service); a private one for tests.
        self.events = events if events is not None else EventBus()
        self._slots: dict[str, ReaderSlot] = {}
        self._pcsc_available: bool | None = None
        self._pcsc_error: str | None = None
        self._pcsc_detail: str | None = None
        self._reads = 0
        self.started_at = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first_scan: asyncio.Event | None = None
        self._monitor: ReaderMonitor | None = None

    # -- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._first_scan = asyncio.Event()
        self._monitor = ReaderMonitor(self._backend, self._from_monitor)
        self._monitor.start()
        # Answer the first requests with the real readers, not an empty list.
        try:
            await asyncio.wait_for(self._first_scan.wait(), FIRST_SCAN_TIMEOUT)
        except TimeoutError:
            log.warning("no reader scan within %.0f s of start", FIRST_SCAN_TIMEOUT)

    async def stop(self) -> None:
        if self._monitor is not None:
            await asyncio.to_thread(self._monitor.stop)
        for slot in self._slots.values():
            if slot.task is not None:
                slot.task.cancel()
        tasks = [s.task for s in self._slots.values() if s.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        self.events.close()
        await asyncio.to_thread(self._backend.close)

    def _from_monitor(self, event: ReaderEvent) -> None:
        """Called in the monitor thread: hand the event to the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_reader_event, event)

    # -- reader events -----------------------------------------------------------------
    def _on_reader_event(self, ev: ReaderEvent) -> None:
        log.info("reader event %s %s", ev.kind, ev.reader)
        if ev.kind == "reader_added":
            self._slots.setdefault(ev.reader, ReaderSlot(ev.reader))
            self.events.publish("reader.added", ev.reader, readers=self.reader_names())
        elif ev.kind == "reader_removed":
            slot = self._slots.pop(ev.reader, None)
            if slot is not None:
                self._clear(slot, CardRemoved("reader removed"))
            self.events.publish("reader.removed", ev.reader, readers=self.reader_names())
        elif ev.kind == "card_inserted":
            slot = self._slots.setdefault(ev.reader, ReaderSlot(ev.reader))
            self._clear(slot, CardRemoved("card replaced"))
            slot.present, slot.atr = True, ev.atr
            slot.inserted_at = time.monotonic()
            self.events.publish("card.inserted", ev.reader,
                                atr=ev.atr.hex(" ").upper() if ev.atr else None)
            self._start_read(slot)
        elif ev.kind == "card_removed":
            slot = self._slots.get(ev.reader)
            if slot is not None and slot.present:
                self._clear(slot, CardRemoved())
                self.events.publish("card.removed", ev.reader)
        elif ev.kind in ("pcsc_unavailable", "pcsc_available"):
            self._pcsc_available = ev.kind == "pcsc_available"
            self._pcsc_error = ev.error or None
            self._pcsc_detail = ev.detail or None
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
        slot.card, slot.error, slot.read_at = None, None, None
        slot.applets = AppletRead()
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
            return slot.insertion == insertion and self._slots.get(slot.name) is slot

        def text_arrived(card: CardRead) -> None:
            if not current():
                return
            slot.card, slot.read_at = card, dt.datetime.now().astimezone()
            if slot.text_ready is not None and not slot.text_ready.done():
                slot.text_ready.set_result(card)
            self.events.publish("card.read", slot.name, card=card.to_json(),
                                photo_pending=self.read_photo)

        def work() -> CardRead:
            return read_exclusive(self._backend, slot.name, slot.atr, photo=self.read_photo,
                                  on_text=lambda c: _discard(loop.call_soon_threadsafe(
                                      text_arrived, c)))

        try:
            card = await asyncio.to_thread(work)
        except asyncio.CancelledError:
            raise
        except AgentError as exc:
            self._read_failed(slot, insertion, exc)
            return
        except Exception as exc:
            log.exception("card read failed unexpectedly")
            self._read_failed(slot, insertion, AgentError(type(exc).__name__))
            return
        await asyncio.sleep(0)   # let the text hand-off scheduled from the thread run first
        if not current():
            return
        self._reads += 1
        slot.card, slot.status = card, "ready"
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
    @property
    def backend_kind(self) -> str:
        return self._backend.kind

    @property
    def reads(self) -> int:
        """Completed card reads since start (one per insertion however many callers)."""
        return self._reads

    def pcsc_state(self) -> str:
        return {None: "starting", True: "available", False: "unavailable"}[
            self._pcsc_available]

    def pcsc_status(self) -> dict[str, str | None]:
        """State, error code and why (the failing PC/SC call), as /v1/status shows them."""
        return {"state": self.pcsc_state(), "error": self._pcsc_error,
                "detail": self._pcsc_detail}

    def reader_names(self) -> list[str]:
        return list(self._slots)

    def readers(self) -> list[dict[str, Any]]:
        return [slot.info() for slot in self._slots.values()]

    def terminals(self) -> list[tuple[str, bool]]:
        """(name, card present) of every reader, in order."""
        return [(slot.name, slot.present) for slot in self._slots.values()]

    def readers_with_cards(self, names: Iterable[str] = (), *,
                           photo: bool = True) -> list[dict[str, Any]]:
        """``readers()`` with each reader's card as far as it is read (for snapshots)."""
        wanted = set(names)
        out = []
        for slot in self._slots.values():
            if wanted and slot.name not in wanted:
                continue
            info = slot.info()
            info["card"] = (slot.card.to_json(photo_b64=photo)
                            if slot.card is not None else None)
            out.append(info)
        return out

    def status(self) -> dict[str, Any]:
        return {"backend": self.backend_kind,
                "pcsc": self.pcsc_status(),
                "readers": self.readers(), "reads": self._reads,
                "uptime_s": round(time.monotonic() - self.started_at, 1)}

    def _choose(self, name: str | None = None) -> ReaderSlot:
        if self._pcsc_available is False and not self._slots:
            raise PcscUnavailable(self._pcsc_detail or self._pcsc_error)
        return self._slots[pick_reader(self.terminals(), name, self.default_reader)]

    def choose_reader(self, name: str | None = None) -> ReaderView:
        """The named reader; else the default; else the one with a card; else the first."""
        return self._choose(name).view()

    async def get_card(self, name: str | None = None, *, photo: bool = False,
                       timeout: float | None = None, nhso: bool = False,
                       laser: bool = False) -> tuple[ReaderView, CardRead]:
        """The cached card of a reader, waiting for the read in progress if needed.

        ``nhso`` / ``laser``: with the opt-in applets too, read once per insertion when first
        asked for (after the card's own read, in a transaction of their own).
        """
        view, card = await self._get_card(name, photo=photo or nhso or laser, timeout=timeout)
        if not (nhso or laser):
            return view, card
        slot = self._choose(view.name)
        insertion = slot.insertion
        async with slot.applets_lock:
            have = slot.applets
            want_nhso = nhso and not have.nhso_asked
            want_laser = laser and not have.laser_asked
            if want_nhso or want_laser:
                got = await asyncio.to_thread(read_applets, self._backend, slot.name, slot.atr,
                                              nhso=want_nhso, laser=want_laser)
                if slot.insertion != insertion:
                    raise CardRemoved(slot.name)
                merged = replace(have)
                if want_nhso:
                    merged.nhso_asked, merged.nhso = True, got.nhso
                if want_laser:
                    merged.laser_asked, merged.laser_id = True, got.laser_id
                    merged.laser_command, merged.laser_error = got.laser_command, got.laser_error
                slot.applets = merged
            have = slot.applets
        # Each caller sees the applets it asked for: a copy, the cached read stays as read.
        shown = replace(card)
        replace(have, nhso_asked=nhso and have.nhso_asked,
                laser_asked=laser and have.laser_asked).apply(shown)
        return view, shown

    async def _get_card(self, name: str | None, *, photo: bool,
                        timeout: float | None) -> tuple[ReaderView, CardRead]:
        slot = self._choose(name)
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
        return slot.view(), card

    # -- demo mode: web developers and staff insert and remove fake cards -----------------
    @property
    def demo(self) -> bool:
        return isinstance(self._backend, DemoBackend)

    def _demo_backend(self) -> DemoBackend:
        if not isinstance(self._backend, DemoBackend):
            raise NotFound("only in demo mode")
        return self._backend

    def demo_insert(self, reader: str | None = None, variant: int = 0) -> str:
        """Put demo card ``variant`` into a reader (the usual choice when none is named)."""
        backend = self._demo_backend()
        if not 0 <= variant < DEMO_VARIANTS:
            raise ValueError(f"variant must be 0-{DEMO_VARIANTS - 1}")
        name = self._choose(reader).name
        backend.insert(name, demo_card(variant))
        return name

    def demo_remove(self, reader: str | None = None) -> str:
        backend = self._demo_backend()
        name = self._choose(reader).name
        backend.remove(name)
        return name

    def demo_card_present(self) -> bool | None:
        """Whether a demo card is in any reader; None when this is not the demo reader."""
        if not isinstance(self._backend, DemoBackend):
            return None
        return any(state.present for state in self._backend.snapshot())


# A card reset by another program, or a command that timed out, restarts the read from the
# SELECT this many times before read_interrupted is answered; the pauses between tries are
# short (another program's own exchange usually takes tens of milliseconds).
MAX_RESTARTS = 4
RESTART_PAUSE_S = 0.05


def _doubtful(card: CardRead) -> bool:
    """A read that a one-off interleaving may have spoiled: worth one more read."""
    return (not card.text.citizen_id_valid
            or isinstance(card.photo_error, CardDataInvalid))


def read_exclusive(backend: ReaderBackend, reader: str, atr: bytes | None = None, *,
                   photo: bool = True, on_text: Callable[[CardRead], None] | None = None,
                   nhso: bool = False, laser: bool = False) -> CardRead:
    """One card read, start to end in one PC/SC transaction (docs/pcsc.md).

    Another program that resets the card (or a command that timed out) makes the read
    start again from the SELECT on a fresh connection, at most ``MAX_RESTARTS`` times,
    then ``read_interrupted``. A read that fails validation (a check digit, data that
    cannot be decoded, a photo without its end marker) is read once more while the card
    stays in: if it left, the fresh connect says so. The text goes to ``on_text`` once,
    when its citizen id checks out (or on the last try).
    """
    restarts = _Restarts(reader)
    retry_left = 1
    handed = False

    def hand(card: CardRead) -> None:
        nonlocal handed
        if on_text is not None and not handed and (card.text.citizen_id_valid or not retry_left):
            handed = True
            on_text(card)

    def read(transmit: Callable[[bytes], bytes], card_atr: bytes) -> CardRead:
        return read_card(transmit, card_atr, photo=photo,
                         on_text=hand if on_text is not None else None, nhso=nhso, laser=laser)

    while True:
        try:
            card = _in_transaction(backend, reader, atr, read, restarts)
        except (CardDataInvalid, ApduFailed) as exc:
            if not retry_left:
                raise
            retry_left = 0
            log.info("read on %s failed validation (%s); reading once more", reader, exc)
            continue
        if retry_left and _doubtful(card):
            retry_left = 0
            log.info("read on %s looks spoiled; reading once more", reader)
            continue
        hand(card)
        return card


def read_applets(backend: ReaderBackend, reader: str, atr: bytes | None = None, *,
                 nhso: bool = False, laser: bool = False) -> AppletRead:
    """The opt-in applets alone (NHSO coverage, laser id), in one transaction."""
    def read(transmit: Callable[[bytes], bytes], card_atr: bytes) -> AppletRead:
        return read_optional_applets(transmit, card_atr, nhso=nhso, laser=laser)

    return _in_transaction(backend, reader, atr, read, _Restarts(reader))


class _Restarts:
    """Restarts of one read after another program reset the card: bounded, with backoff."""

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self.count = 0

    def after(self, exc: CardReset) -> None:
        self.count += 1
        if self.count > MAX_RESTARTS:
            raise ReadInterrupted(f"{self.reader}: {exc} ({self.count} tries)") from exc
        log.info("read on %s restarts (%d/%d): %s", self.reader, self.count, MAX_RESTARTS, exc)
        time.sleep(RESTART_PAUSE_S * self.count)


def _in_transaction(backend: ReaderBackend, reader: str, atr: bytes | None,
                    work: Callable[[Callable[[bytes], bytes], bytes], _T],
                    restarts: _Restarts) -> _T:
    """``work(transmit, atr)`` inside one PC/SC transaction on a fresh connection, started
    again from the beginning when another program resets the card (``restarts`` bounds it)."""
    while True:
        try:
            with backend.connect(reader) as channel:
                channel.begin_transaction()
                try:
                    return work(channel.transmit, channel.atr or atr or b"")
                finally:
                    channel.end_transaction()
        except CardReset as exc:
            restarts.after(exc)


def open_backend(kind: str = "pcsc") -> ReaderBackend:
    """The reader backend of that kind (``pcsc``, ``demo`` or ``auto``): the only way in."""
    return make_backend(kind)


def read_once(backend: ReaderBackend, reader: str | None = None, *, photo: bool = True,
              nhso: bool = False, laser: bool = False) -> tuple[str, CardRead]:
    """One read outside the resident service (the ``read`` command): same reader rule."""
    states = backend.snapshot()
    name = pick_reader([(s.name, s.present) for s in states], reader)
    state = next(s for s in states if s.name == name)
    if not state.present:
        raise NoCard(name)
    return name, read_exclusive(backend, name, state.atr, photo=photo, nhso=nhso, laser=laser)


def list_readers(backend: ReaderBackend) -> list[ReaderState]:
    """Readers and card presence now (the ``readers`` command)."""
    return backend.snapshot()
