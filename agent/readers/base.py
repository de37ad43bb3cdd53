"""The small reader interface everything above the PC/SC layer sees.

Two implementations: ``pcsc.PcscBackend`` (the only module that imports pyscard) and
``demo.DemoBackend`` (an in-process simulated reader). Calls block; the monitor thread and
``asyncio.to_thread`` keep them off the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class ReaderState:
    name: str
    present: bool = False
    atr: bytes | None = None     # from the reader state: no connect needed to know it
    mute: bool = False           # a card is in but does not answer (inserted upside down)
    insertion: int = 0           # changes with every insertion (PC/SC event counter)


@dataclass(frozen=True)
class ReaderEvent:
    """What the monitor reports. ``kind`` is one of ``KINDS``."""

    kind: str
    reader: str = ""
    atr: bytes | None = None
    error: str = ""              # an error code from errors.ERROR_TABLE, for pcsc_* / error
    detail: str = ""             # why, for pcsc_unavailable: the failing call and its result

    KINDS = ("reader_added", "reader_removed", "card_inserted", "card_removed",
             "pcsc_unavailable", "pcsc_available", "monitor_error",
             "scanned")  # scanned: a full look at the readers was applied


class CardChannel(ABC):
    """A connection to the card in one reader (shared mode; leaves the card as it was)."""

    atr: bytes

    @abstractmethod
    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU, return data + SW1 SW2.

        Raises ``CardRemoved`` when the card left, ``ReaderError`` / ``PcscUnavailable``.
        """

    @abstractmethod
    def close(self) -> None:
        """Disconnect, leaving the card powered (never reset it under another program)."""

    def begin_transaction(self) -> None:  # noqa: B027 - optional: the demo reader has one user
        """Hold the card for one read: other programs' commands wait until ``end``."""

    def end_transaction(self) -> None:  # noqa: B027 - optional, as begin_transaction
        """Let other programs use the card again (never resets it)."""

    def __enter__(self) -> CardChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReaderBackend(ABC):
    kind: str = ""

    @abstractmethod
    def snapshot(self) -> list[ReaderState]:
        """Readers now, by name. Raises ``PcscUnavailable`` when the service is down."""

    @abstractmethod
    def wait_for_change(self, known: list[ReaderState],
                        timeout: float | None = None) -> list[ReaderState]:
        """Block until readers or cards differ from ``known`` (or timeout / ``cancel``).

        Returns the readers now. Raises ``PcscUnavailable`` when the service goes away.
        """

    @abstractmethod
    def cancel(self) -> None:
        """Wake a ``wait_for_change`` blocked in another thread."""

    @abstractmethod
    def connect(self, reader: str) -> CardChannel:
        """Connect to the card in ``reader``. Raises ``NoCard``, ``ReaderNotFound``, ..."""

    def close(self) -> None:  # noqa: B027 - optional: the demo backend holds nothing to release
        """Release the backend's resources (context); further calls may fail."""


def diff_states(old: list[ReaderState], new: list[ReaderState]) -> list[ReaderEvent]:
    """The events that take ``old`` to ``new`` (removals first, then arrivals)."""
    before = {r.name: r for r in old}
    after = {r.name: r for r in new}
    events: list[ReaderEvent] = []
    for name, r in before.items():
        if name not in after:
            if r.present:
                events.append(ReaderEvent("card_removed", name))
            events.append(ReaderEvent("reader_removed", name))
    for name, r in after.items():
        prev = before.get(name)
        if prev is None:
            events.append(ReaderEvent("reader_added", name))
            prev = ReaderState(name)
        # A quick swap can hide the empty state between two cards: a new insertion count
        # or ATR while present is a removal followed by an insertion.
        swapped = prev.present and r.present and (prev.atr, prev.insertion) != (r.atr, r.insertion)
        if prev.present and (not r.present or swapped):
            events.append(ReaderEvent("card_removed", name))
        if r.present and (not prev.present or swapped):
            events.append(ReaderEvent("card_inserted", name, atr=r.atr))
    return events
