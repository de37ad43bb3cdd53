"""A virtual Thai ID card that plugs into pcscd through the vsmartcard-vpcd reader driver.

The card is the TCP client of vpcd: connecting to 127.0.0.1:35963 (slot 0) or 35964
(slot 1) inserts it, closing the connection pulls it out. vpcd speaks first; every
message is a 2-byte big-endian length and a payload: one control byte (00 power off,
01 power on, 02 reset, 04 get ATR) or a command APDU. The card logic is the project's
``SimulatedCard``; this module only adds the wire protocol and the field failures the
tests need (per-APDU delay, a card pulled at a chosen APDU or after some seconds).

Latency: vpcd writes the length and the payload separately, so with delayed ACKs every
APDU would stall ~40 ms. ``TCP_NODELAY`` plus ``TCP_QUICKACK`` before every recv (Linux
clears it again) and one ``sendall`` per reply keep a full read in milliseconds.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Protocol

from agent.card.demo import demo_profile
from agent.card.encode import encode_card
from agent.card.simulator import ATR_3B79, SimulatedCard
from agent.card.values import CardProfile

VPCD_HOST = "127.0.0.1"          # vpcd listens on every interface: only ever use loopback
VPCD_PORTS = (35963, 35964)
READER_NAMES = ("Virtual PCD 00 00", "Virtual PCD 00 01")

CTRL_POWER_OFF, CTRL_POWER_ON, CTRL_RESET, CTRL_GET_ATR = 0, 1, 2, 4


class CardLogic(Protocol):
    """What the wire needs from a card: its ATR, a power cycle, and one APDU's answer.

    ``SimulatedCard`` is one; the known-answer tests plug in a card written from the shared
    docs alone (``tests/known/doc_card.py``) so the agent is not checked against itself.
    """

    atr: bytes

    def reset(self) -> None: ...

    def process(self, apdu: bytes) -> bytes: ...


class VirtualCard:
    """One card; ``insert(slot)`` puts it in a vpcd slot, ``remove()`` pulls it out.

    ``pull_at_apdu=n`` pulls the card when its n-th command APDU (1-based) arrives,
    without answering it: pcscd sees the card vanish in the middle of a command.
    ``pull_after`` pulls it that many seconds after insertion. ``glitch_at_apdu=n``
    answers the n-th command once with a garbled one-byte frame (a link glitch) and
    then carries on as if it never arrived. ``apdu_delay`` is slept
    before every answer (real cards need tens of milliseconds per command).
    ``hold_at_apdu=n`` keeps the n-th command unanswered until the card is removed, and
    sets ``held`` when it arrives: a test waits on that to act in the middle of a read
    (kill pcscd, pull the card) at a known APDU instead of after a guessed time.
    """

    def __init__(self, card: CardLogic, *, apdu_delay: float = 0.0,
                 pull_at_apdu: int | None = None, pull_after: float | None = None,
                 glitch_at_apdu: int | None = None, hold_at_apdu: int | None = None) -> None:
        self.card = card
        self.hold_at_apdu = hold_at_apdu
        self.held = threading.Event()
        self._release = threading.Event()
        self.glitch_at_apdu = glitch_at_apdu
        self.apdu_delay = apdu_delay
        self.pull_at_apdu = pull_at_apdu
        self.pull_after = pull_after
        self.apdus = 0                  # command APDUs answered since insertion
        self.slot: int | None = None
        self.error: BaseException | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()

    @classmethod
    def from_profile(cls, profile: CardProfile, *, atr: bytes = ATR_3B79,
                     strict_p2: bool = True, **options: object) -> VirtualCard:
        return cls(SimulatedCard(encode_card(profile), atr=atr, strict_p2=strict_p2),
                   **options)

    @classmethod
    def from_image(cls, moi_image: bytes, *, atr: bytes = ATR_3B79,
                   nhso_image: bytes | None = None, laser_answer: bytes | None = None,
                   **options: object) -> VirtualCard:
        """A card serving a raw file image (bytes as on the card), not one built from values."""
        return cls(SimulatedCard(moi_image, atr=atr, nhso_image=nhso_image,
                                 laser_answer=laser_answer), **options)

    @classmethod
    def demo(cls, variant: int = 0, **options: object) -> VirtualCard:
        return cls.from_profile(demo_profile(variant), **options)

    @property
    def reader(self) -> str:
        assert self.slot is not None, "not inserted"
        return READER_NAMES[self.slot]

    @property
    def inserted(self) -> bool:
        return self._thread is not None and not self._closed.is_set()

    def insert(self, slot: int = 0, timeout: float = 5.0) -> VirtualCard:
        """Connect to vpcd. pcscd notices the card on its next poll (~0.4 s), not now."""
        if self.inserted:
            raise RuntimeError("card already inserted")
        sock = socket.create_connection((VPCD_HOST, VPCD_PORTS[slot]), timeout=timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.slot, self._sock, self.apdus, self.error = slot, sock, 0, None
        self.card.reset()
        self._closed = threading.Event()
        self.held = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(sock, self._closed),
                                        name=f"vpcd-card-{slot}", daemon=True)
        self._thread.start()
        if self.pull_after is not None:
            timer = threading.Timer(self.pull_after, self._pull_if_current, args=(sock,))
            timer.daemon = True
            timer.start()
        return self

    def remove(self, timeout: float = 5.0) -> None:
        """Pull the card out (close the connection) and wait for the serving thread."""
        self._release.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            self._shutdown(sock)
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_pulled(self, timeout: float) -> bool:
        """Wait until the card left by itself (``pull_at_apdu`` / ``pull_after``)."""
        return self._closed.wait(timeout)

    # -- the vpcd conversation -------------------------------------------------------------
    def _pull_if_current(self, sock: socket.socket) -> None:
        with self._lock:
            current = self._sock is sock
        if current:
            self._shutdown(sock)

    def _shutdown(self, sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass                          # already gone

    def _serve(self, sock: socket.socket, closed: threading.Event) -> None:
        try:
            while True:
                payload = _recv_frame(sock)
                if payload is None:
                    return
                reply = self._answer(payload)
                if reply is _PULL:
                    return
                if reply is not None:
                    sock.sendall(struct.pack(">H", len(reply)) + reply)
        except OSError as exc:
            # A reset from vpcd after our own shutdown is the normal end of a removal.
            if not closed.is_set():
                self.error = exc
        finally:
            with self._lock:
                if self._sock is sock:
                    self._sock = None
            closed.set()
            sock.close()

    def _answer(self, payload: bytes) -> bytes | object | None:
        if len(payload) == 1:
            control = payload[0]
            if control in (CTRL_POWER_OFF, CTRL_POWER_ON, CTRL_RESET):
                self.card.reset()       # a real card loses its selected applet
                return None
            if control == CTRL_GET_ATR:
                return self.card.atr
            raise ValueError(f"unknown vpcd control byte {control:#x}")
        if self.pull_at_apdu is not None and self.apdus + 1 >= self.pull_at_apdu:
            return _PULL
        if self.hold_at_apdu is not None and self.apdus + 1 == self.hold_at_apdu:
            self.held.set()
            self._release.wait()        # never answered: ends when the test removes the card
            return _PULL
        if self.glitch_at_apdu is not None and self.apdus + 1 == self.glitch_at_apdu:
            self.glitch_at_apdu = None
            return b"\x6f"              # one byte, no status word: a garbled answer
        if self.apdu_delay:
            time.sleep(self.apdu_delay)
        response = self.card.process(payload)
        self.apdus += 1
        return response


_PULL = object()


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        # Delayed ACK would hold vpcd's second write ~40 ms; QUICKACK is cleared by the
        # kernel after use, so it is set again before every read.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _recv_frame(sock: socket.socket) -> bytes | None:
    header = _recv_exact(sock, 2)
    if header is None:
        return None
    (size,) = struct.unpack(">H", header)
    return _recv_exact(sock, size)


# -- the readers' and cards' quirks, as card logic wrappers (issue 12) ------------------------
# Each wraps any ``CardLogic`` and plugs into ``VirtualCard`` unchanged: a mode per quirk.

class ReaderFetches:
    """A reader (or driver) that runs GET RESPONSE itself: a read is answered with its data
    and ``90 00`` at once, never ``61 LL``."""

    def __init__(self, card: CardLogic) -> None:
        self.card = card
        self.atr = card.atr

    def reset(self) -> None:
        self.card.reset()

    def process(self, apdu: bytes) -> bytes:
        response = self.card.process(apdu)
        if len(response) == 2 and response[0] == 0x61 and apdu[:2] == b"\x80\xb0":
            p2 = 0x01 if self.atr[:2] == b"\x3b\x67" else 0x00
            return self.card.process(bytes([0x00, 0xC0, 0x00, p2, response[1]]))
        return response


class HangingCard:
    """A card that does not answer its ``hang_at``-th command APDU (1-based) for
    ``hang_for`` seconds, or until ``release()`` / removal when ``hang_for`` is None.
    ``commands`` records every command, so a test can tell a repeated one."""

    def __init__(self, card: CardLogic, hang_at: int, hang_for: float | None) -> None:
        self.card = card
        self.atr = card.atr
        self.hang_at = hang_at
        self.hang_for = hang_for
        self.commands: list[bytes] = []
        self.hung = threading.Event()
        self._release = threading.Event()

    def reset(self) -> None:
        self.card.reset()

    def release(self) -> None:
        self._release.set()

    def process(self, apdu: bytes) -> bytes:
        self.commands.append(apdu)
        if len(self.commands) == self.hang_at:
            self.hung.set()
            self._release.wait(self.hang_for)
        return self.card.process(apdu)


def jpeg_with_spaces_at_chunk_edges(size: int = 3000, chunk: int = 255) -> bytes:
    """A valid JPEG whose bytes at every read boundary (and around it) are 0x20: a comment
    segment of spaces right after SOI, the rest a small real JPEG."""
    from agent.card.demo import demo_photo

    base = demo_photo("EDGE", 3)
    pad = size - len(base) - 4
    assert 0 <= pad < 0xFFFF, size
    photo = base[:2] + b"\xff\xfe" + (pad + 2).to_bytes(2, "big") + b"\x20" * pad + base[2:]
    edges = range(chunk, 6 + pad, chunk)
    assert edges and all(photo[i - 1:i + 1] == b"\x20\x20" for i in edges)
    return photo
