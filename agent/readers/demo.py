"""An in-process simulated reader (demo mode and tests): no PC/SC needed.

Cards are ``SimulatedCard``s built by the encoder; they can be inserted and removed from
any thread, and the reader behaves like a real one: a removal mid-read makes the next
``transmit`` raise ``CardRemoved``.
"""

from __future__ import annotations

import threading
import time

from ..card.demo import demo_profile
from ..card.encode import encode_card
from ..card.simulator import SimulatedCard
from ..errors import CardRemoved, NoCard, ReaderNotFound
from .base import CardChannel, ReaderBackend, ReaderState

DEMO_READER = "Thai Card Agent Demo Reader 0"


class _Slot:
    def __init__(self) -> None:
        self.card: SimulatedCard | None = None
        self.insertion = 0


class DemoBackend(ReaderBackend):
    kind = "demo"

    def __init__(self, readers: tuple[str, ...] = (DEMO_READER,), *,
                 apdu_delay: float = 0.0, insert_demo_card: bool = True) -> None:
        self._cond = threading.Condition()
        self._slots: dict[str, _Slot] = {name: _Slot() for name in readers}
        self._cancelled = False
        self.apdu_delay = apdu_delay
        if insert_demo_card and readers:
            self.insert(readers[0], demo_card())

    # -- control (demo UI and tests) -----------------------------------------------------
    def insert(self, reader: str, card: SimulatedCard) -> None:
        with self._cond:
            slot = self._slot(reader)
            card.reset()
            slot.card = card
            slot.insertion += 1
            self._cond.notify_all()

    def remove(self, reader: str) -> None:
        with self._cond:
            self._slot(reader).card = None
            self._cond.notify_all()

    def add_reader(self, reader: str) -> None:
        with self._cond:
            self._slots.setdefault(reader, _Slot())
            self._cond.notify_all()

    def remove_reader(self, reader: str) -> None:
        with self._cond:
            self._slots.pop(reader, None)
            self._cond.notify_all()

    def _slot(self, reader: str) -> _Slot:
        try:
            return self._slots[reader]
        except KeyError:
            raise ReaderNotFound(reader) from None

    # -- ReaderBackend --------------------------------------------------------------------
    def snapshot(self) -> list[ReaderState]:
        with self._cond:
            return [ReaderState(name, slot.card is not None,
                                slot.card.atr if slot.card else None, insertion=slot.insertion)
                    for name, slot in self._slots.items()]

    def wait_for_change(self, known: list[ReaderState],
                        timeout: float | None = None) -> list[ReaderState]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                now = self.snapshot()
                if now != known or self._cancelled:
                    self._cancelled = False
                    return now
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return now
                self._cond.wait(remaining)

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def connect(self, reader: str) -> CardChannel:
        with self._cond:
            slot = self._slot(reader)
            if slot.card is None:
                raise NoCard(reader)
            return _DemoChannel(self, slot, slot.card, slot.insertion)


class _DemoChannel(CardChannel):
    def __init__(self, backend: DemoBackend, slot: _Slot, card: SimulatedCard,
                 insertion: int) -> None:
        self._backend = backend
        self._slot = slot
        self._card = card
        self._insertion = insertion
        self.atr = card.atr

    def transmit(self, apdu: bytes) -> bytes:
        if self._backend.apdu_delay:
            time.sleep(self._backend.apdu_delay)
        with self._backend._cond:
            if self._slot.card is not self._card or self._slot.insertion != self._insertion:
                raise CardRemoved()
            return self._card.process(apdu)

    def close(self) -> None:
        pass


def demo_card(variant: int = 0) -> SimulatedCard:
    return SimulatedCard(encode_card(demo_profile(variant)))
