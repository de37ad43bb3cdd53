"""Reading a whole card over any ``transmit`` function, text first, photo after.

``transmit`` is the only I/O: it sends one command APDU and returns the response (data +
SW). The reader layer passes its own (PC/SC or simulated); tests pass the simulator's.
A read that loses the card part-way raises: a partial card is never returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from ..errors import AgentError, CardDataInvalid, LaserUnavailable
from . import layout as L
from .apdu import Conversation, Script
from .decode import (
    JPEG_END,
    JPEG_START,
    decode_laser_id,
    decode_nhso,
    decode_photo,
    decode_text_fields,
)
from .values import CardText, NhsoCoverage

T = TypeVar("T")
Transmit = Callable[[bytes], bytes]


def card_generation(atr: bytes) -> str:
    """``TH NID n`` from the ATR's historical bytes when present (for diagnostics)."""
    marker = b"TH NID"
    at = atr.find(marker)
    if at < 0:
        return ""
    return atr[at:].decode("ascii", errors="replace").strip()


@dataclass
class ReadStats:
    apdus: int = 0
    text_apdus: int = 0
    text_ms: float = 0.0
    photo_ms: float = 0.0
    total_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"apdus": self.apdus, "text_apdus": self.text_apdus,
                "text_ms": round(self.text_ms, 2), "photo_ms": round(self.photo_ms, 2),
                "total_ms": round(self.total_ms, 2)}


@dataclass
class CardRead:
    atr: bytes
    text: CardText
    photo: bytes | None = None
    photo_error: AgentError | None = None
    nhso: NhsoCoverage | None = None
    nhso_asked: bool = False           # asked for: an absent applet shows as null
    laser_id: str | None = None
    laser_command: bytes | None = None  # which of the laser id's command forms answered
    laser_error: AgentError | None = None
    stats: ReadStats = field(default_factory=ReadStats)

    def value(self, f: L.Field) -> Any:
        """The value of one layout field (``L.FIELDS``) as read; the photo may be None."""
        return self.photo if f.kind is L.Kind.PHOTO else getattr(self.text, f.name)

    def to_json(self, *, photo_b64: bool = False) -> dict[str, Any]:
        import base64

        out = self.text.to_json()
        out["card"]["atr"] = self.atr.hex(" ").upper()
        out["card"]["generation"] = card_generation(self.atr)
        out["photo"] = None if self.photo is None else {"size": len(self.photo),
                                                         "format": "image/jpeg"}
        if photo_b64 and self.photo is not None:
            out["photo"]["base64"] = base64.b64encode(self.photo).decode()
        if self.photo_error is not None:
            out["photo_error"] = self.photo_error.to_dict()
        if self.nhso is not None or self.nhso_asked:
            out["nhso_applet"] = None if self.nhso is None else self.nhso.to_json()
        if self.laser_id is not None:
            out["laser_id"] = self.laser_id
            if self.laser_command is not None:
                out["laser_id_command"] = self.laser_command.hex(" ").upper()
        if self.laser_error is not None:
            out["laser_error"] = self.laser_error.to_dict()
        out["read"] = self.stats.to_json()
        return out


def run_script(script: Script[T], transmit: Transmit, conv: Conversation) -> T:
    """Drive a sans-I/O script over ``transmit``, counting APDUs."""
    try:
        command = next(script)
        while True:
            response = transmit(command)
            conv.apdus += 1
            command = script.send(response)
    except StopIteration as done:
        result: T = done.value          # what the script returned: typed by the script
        return result


def photo_length_of(block: bytes) -> int | None:
    """The photo's length as the card states it at 0x0179 (in the text block), when usable."""
    stated = int.from_bytes(L.PHOTO_LENGTH.cut(block, L.TEXT_BLOCK.offset), "big")
    return stated if 4 <= stated <= L.PHOTO.length else None


def read_card(transmit: Transmit, atr: bytes, *, photo: bool = True,
              on_text: Callable[[CardRead], None] | None = None,
              nhso: bool = False, laser: bool = False) -> CardRead:
    """Read the card: SELECT, text fields in bulk, then the photo.

    With ``on_text`` the text fields (address included) are read first and handed over
    before the photo is read, so callers can show the name at once. Without it, and when
    the card does not state its photo's length, the photo and the address are read as one
    span, which saves two APDUs. When the card states the length (0x0179, read with the
    text), only that many photo bytes are read.
    """
    conv = Conversation(atr)
    started = time.perf_counter()

    def run(script: Script[T]) -> T:
        return run_script(script, transmit, conv)

    run(conv.select_script(L.MOI_AID))
    block = run(conv.read_span_script(L.TEXT_BLOCK.offset, L.TEXT_BLOCK.length, "read_text"))
    length = photo_length_of(block)
    stats = ReadStats()
    photo_raw = None
    if photo and on_text is None and length is None:
        span = run(conv.read_span_script(L.PHOTO.offset, L.PHOTO.length + L.TAIL_BLOCK.length,
                                         "read_photo"))
        photo_raw, tail = span[:L.PHOTO.length], span[L.PHOTO.length:]
    else:
        tail = run(conv.read_span_script(L.TAIL_BLOCK.offset, L.TAIL_BLOCK.length,
                                         "read_address"))
    result = CardRead(atr=atr, text=decode_text_fields(block, tail), stats=stats)
    stats.text_apdus = conv.apdus
    stats.text_ms = (time.perf_counter() - started) * 1000
    if on_text is not None:
        stats.apdus = conv.apdus
        # A copy: what was handed on never changes under its holder (the photo and the
        # counts below go on the card this read returns).
        on_text(replace(result, stats=replace(stats)))

    if photo:
        photo_started = time.perf_counter()
        try:
            result.photo = (decode_photo(photo_raw) if photo_raw is not None
                            else _read_photo(conv, run, length))
        except AgentError as exc:       # a bad photo does not void the text fields
            if not isinstance(exc, CardDataInvalid):
                raise                   # a removed card or a dead reader ends the read
            result.photo_error = exc
        stats.photo_ms = (time.perf_counter() - photo_started) * 1000

    if nhso or laser:
        _read_applets(conv, run, nhso=nhso, laser=laser).apply(result)
    stats.apdus = conv.apdus
    stats.total_ms = (time.perf_counter() - started) * 1000
    return result


def _read_photo(conv: Conversation, run: Callable[[Script[Any]], Any],
                length: int | None) -> bytes:
    """The photo: only the card's stated length when it holds a whole JPEG, else the field."""
    if length is None:
        return decode_photo(run(conv.read_span_script(L.PHOTO.offset, L.PHOTO.length,
                                                      "read_photo")))
    head = run(conv.read_span_script(L.PHOTO.offset, length, "read_photo"))
    if head.startswith(JPEG_START) and head.endswith(JPEG_END):
        return bytes(head)
    # The stated length does not hold a whole JPEG: read the rest of the field as before.
    rest = run(conv.read_span_script(L.PHOTO.offset + length, L.PHOTO.length - length,
                                     "read_photo"))
    return decode_photo(head + rest)


@dataclass
class AppletRead:
    """What the opt-in applets gave: read with the card, or later on request."""

    nhso_asked: bool = False
    nhso: NhsoCoverage | None = None
    laser_asked: bool = False
    laser_id: str | None = None
    laser_command: bytes | None = None
    laser_error: AgentError | None = None

    def apply(self, card: CardRead) -> None:
        if self.nhso_asked:
            card.nhso_asked, card.nhso = True, self.nhso
        if self.laser_asked:
            card.laser_id, card.laser_command = self.laser_id, self.laser_command
            card.laser_error = self.laser_error


def _read_applets(conv: Conversation, run: Callable[[Script[Any]], Any], *,
                  nhso: bool, laser: bool) -> AppletRead:
    out = AppletRead(nhso_asked=nhso, laser_asked=laser)
    if nhso:
        out.nhso = _optional(lambda: _read_nhso(conv, run))
    if laser:
        try:
            answer, command = run(conv.laser_id_script())
            out.laser_id, out.laser_command = decode_laser_id(answer), command
        except (LaserUnavailable, CardDataInvalid) as exc:
            out.laser_error = LaserUnavailable(str(exc))
    return out


def read_optional_applets(transmit: Transmit, atr: bytes, *, nhso: bool = False,
                          laser: bool = False) -> AppletRead:
    """Only the opt-in applets (for a card whose main read is already done)."""
    conv = Conversation(atr)
    return _read_applets(conv, lambda script: run_script(script, transmit, conv),
                         nhso=nhso, laser=laser)


def _read_nhso(conv: Conversation, run: Callable[[Script[Any]], Any]) -> NhsoCoverage:
    run(conv.select_script(L.NHSO_AID, "select_nhso"))
    return decode_nhso(run(conv.read_span_script(L.NHSO_BLOCK.offset, L.NHSO_BLOCK.length,
                                                 "read_nhso")))


def _optional(read: Callable[[], T]) -> T | None:
    """Optional applets are absent on many cards: their failure means 'not present'.

    A removed card or a dead reader is not 'absent', so those still end the read.
    """
    from ..errors import (
        CardRemoved,
        CardUnresponsive,
        PcscUnavailable,
        ReaderError,
        ReadInterrupted,
        ReadTimeout,
    )

    try:
        return read()
    except (CardRemoved, PcscUnavailable, ReaderError, ReadInterrupted, ReadTimeout,
            CardUnresponsive):
        raise
    except AgentError:
        return None
