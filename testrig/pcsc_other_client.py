"""Another program on the same reader: a second PC/SC client for the test rig.

Hospital PCs are not ours alone: Windows' card services query every inserted card, HIS
card DLLs poll the reader, the old NHSO agent may still be installed. ``OtherProgram``
plays them: on its own context and connection it keeps selecting another applet and
reading from it, with or without transactions of its own, through whatever the card
does (absent, just inserted, in use by us). It never stops on an error: it counts it,
pauses a moment and carries on, as those programs do.

``hold_exclusive`` plays the program that holds the card exclusively for a moment (a
fast re-insert, macOS' own card service): our connect meets a real sharing violation.
pyscard is imported only when a client runs, like the bench's bare loop.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

# An applet the Thai ID card does not have (a PIV card's): selecting it deselects ours.
OTHER_AID = bytes.fromhex("A000000308000010000100")
# The NHSO applet: a real other applet of the card, with a file to read.
NHSO_AID = bytes.fromhex("A000000054480083")


def _select(aid: bytes) -> list[int]:
    return list(bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid)


class OtherProgram(threading.Thread):
    """Selects ``aids`` in turn and reads 16 bytes after each, until ``stop()``.

    ``transactions``: wrap each select + read in SCardBeginTransaction/EndTransaction
    (a well-behaved program); without, its commands land wherever they fall.
    ``pause``: seconds between its exchanges (0 = as fast as it can).
    """

    def __init__(self, reader: str, *, transactions: bool, pause: float = 0.0,
                 aids: tuple[bytes, ...] = (OTHER_AID, NHSO_AID)) -> None:
        super().__init__(name=f"other-program-{'tx' if transactions else 'raw'}", daemon=True)
        self.reader = reader
        self.transactions = transactions
        self.pause = pause
        self.aids = aids
        self.exchanges = 0               # select + read pairs that reached the card
        self.errors: Counter[str] = Counter()
        self._stop_event = threading.Event()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_event.set()
        self.join(timeout)

    def run(self) -> None:
        from smartcard import scard

        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        handle: Any = None
        protocol = 0
        turn = 0
        try:
            while not self._stop_event.is_set():
                if handle is None:
                    hresult, handle, protocol = scard.SCardConnect(
                        context, self.reader, scard.SCARD_SHARE_SHARED,
                        scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
                    if hresult != scard.SCARD_S_SUCCESS:
                        self._count(scard, hresult)
                        handle = None
                        self._stop_event.wait(0.02)
                        continue
                aid = self.aids[turn % len(self.aids)]
                turn += 1
                ok = self._exchange(scard, handle, protocol, aid)
                if not ok:
                    scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
                    handle = None
                    self._stop_event.wait(0.02)
                elif self.pause:
                    self._stop_event.wait(self.pause)
        finally:
            if handle is not None:
                scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
            scard.SCardReleaseContext(context)

    def _exchange(self, scard: Any, handle: Any, protocol: int, aid: bytes) -> bool:
        if self.transactions:
            hresult = scard.SCardBeginTransaction(handle)
            if hresult != scard.SCARD_S_SUCCESS:
                self._count(scard, hresult)
                return False
        try:
            for apdu in (_select(aid), [0x80, 0xB0, 0x00, 0x04, 0x02, 0x00, 0x10],
                         [0x00, 0xC0, 0x00, 0x00, 0x10]):
                hresult, _response = scard.SCardTransmit(handle, protocol, apdu)
                if hresult != scard.SCARD_S_SUCCESS:
                    self._count(scard, hresult)
                    return False
            self.exchanges += 1
            return True
        finally:
            if self.transactions:
                scard.SCardEndTransaction(handle, scard.SCARD_LEAVE_CARD)

    def _count(self, scard: Any, hresult: int) -> None:
        self.errors[scard.SCardGetErrorMessage(hresult)] += 1


def hold_exclusive(reader: str, seconds: float) -> threading.Event:
    """Connect EXCLUSIVE to the card in ``reader`` and hold it ``seconds``, in a thread.

    Returns an event set once the card is held (our SHARED connect then meets a sharing
    violation until the hold ends).
    """
    held = threading.Event()

    def hold() -> None:
        from smartcard import scard

        _, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        try:
            hresult, handle, _ = scard.SCardConnect(
                context, reader, scard.SCARD_SHARE_EXCLUSIVE,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
            if hresult != scard.SCARD_S_SUCCESS:
                raise RuntimeError(f"exclusive connect: {scard.SCardGetErrorMessage(hresult)}")
            held.set()
            time.sleep(seconds)
            scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
        finally:
            scard.SCardReleaseContext(context)

    threading.Thread(target=hold, name="exclusive-holder", daemon=True).start()
    return held
