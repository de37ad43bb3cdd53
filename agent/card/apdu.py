"""The APDU conversation with the card, as sans-I/O scripts.

A script is a generator that yields command APDUs and is sent each response (data + SW1
SW2); its return value is the result. Nothing here touches a reader, so every status-word
path is unit-testable and fuzzable; ``session.run_script`` drives a script over a reader.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

from ..errors import ApduFailed, CardDataInvalid, LaserUnavailable, NotThaiIdCard
from . import layout as L

T = TypeVar("T")
Script = Generator[bytes, bytes, T]

SW_OK = 0x9000
# A card that says "no such applet / instruction / class" is not a Thai ID card.
SW_NOT_THIS_CARD = {0x6A82, 0x6A81, 0x6A86, 0x6D00, 0x6E00, 0x6999}
# GET RESPONSE refused for its P1/P2: the ATR rule did not fit this card; try the other P2.
SW_WRONG_P1P2 = {0x6B00, 0x6A86}
# Bounds the number of 61xx/6Cxx turns one read may take (a broken card must not loop us).
MAX_TURNS = 8


def sw_of(response: bytes) -> int:
    if len(response) < 2:
        raise CardDataInvalid(f"response of {len(response)} bytes has no status word")
    return (response[-2] << 8) | response[-1]


def select(aid: bytes) -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid


def read_command(offset: int, length: int) -> bytes:
    """The MOI applet's read: ``80 B0 HH LL 02 00 LL`` (the data is the length asked)."""
    if not (0 < length <= L.MAX_READ) or not (0 <= offset <= 0xFFFF):
        raise ValueError(f"bad read {offset:#x}+{length}")
    return bytes([0x80, 0xB0, offset >> 8, offset & 0xFF, 0x02, 0x00, length])


def get_response(p2: int, length: int) -> bytes:
    return bytes([0x00, 0xC0, 0x00, p2, length & 0xFF])


def get_response_p2(atr: bytes) -> int:
    """Cards whose ATR starts ``3B 67`` want GET RESPONSE with P2=01; all others P2=00."""
    return 0x01 if atr[:2] == b"\x3b\x67" else 0x00


class Conversation:
    """What one card session has learned (the P2 that works) and how many APDUs it used."""

    def __init__(self, atr: bytes) -> None:
        self.atr = atr
        self.p2 = get_response_p2(atr)
        self.apdus = 0

    def select_script(self, aid: bytes, step: str = "select") -> Script[None]:
        response = yield select(aid)
        sw = sw_of(response)
        if sw in SW_NOT_THIS_CARD:
            raise NotThaiIdCard(f"{step}: status word {sw:04X}")
        if sw != SW_OK and (sw >> 8) != 0x61:
            raise ApduFailed(sw, step)

    def fetch_script(self, length: int, step: str) -> Script[bytes]:
        """GET RESPONSE until ``length`` bytes came, following 61xx and 6Cxx."""
        data = b""
        want = length
        switched_p2 = False
        for _ in range(MAX_TURNS):
            response = yield get_response(self.p2, want)
            sw = sw_of(response)
            if sw == SW_OK:
                return data + response[:-2]
            if (sw >> 8) == 0x61:          # more data waits: fetch it too
                data += response[:-2]
                want = (sw & 0xFF) or 0x100
                continue
            if (sw >> 8) == 0x6C:          # wrong length; the card says which
                want = (sw & 0xFF) or 0x100
                continue
            if sw in SW_WRONG_P1P2 and not switched_p2:
                self.p2 ^= 0x01
                switched_p2 = True
                continue
            raise ApduFailed(sw, step)
        raise CardDataInvalid(f"{step}: card kept asking for more turns")

    def read_script(self, offset: int, length: int, step: str) -> Script[bytes]:
        """One read of at most 255 bytes at ``offset``."""
        response = yield read_command(offset, length)
        sw = sw_of(response)
        if sw == SW_OK and len(response) > 2:   # some readers hand the data back at once
            data = response[:-2]
        elif (sw >> 8) == 0x61:
            data = yield from self.fetch_script((sw & 0xFF) or length, step)
        else:
            raise ApduFailed(sw, step)
        if len(data) < length:
            raise CardDataInvalid(f"{step}: {len(data)} of {length} bytes")
        return data[:length]

    def read_span_script(self, offset: int, length: int, step: str) -> Script[bytes]:
        """A contiguous span of the file in as few reads as possible."""
        out = bytearray()
        while len(out) < length:
            chunk = min(L.MAX_READ, length - len(out))
            out += yield from self.read_script(offset + len(out), chunk, step)
        return bytes(out)

    def laser_id_script(self) -> Script[tuple[bytes, bytes]]:
        """The laser id's answer and the command form that gave it.

        Three forms are in use (``L.LASER_FORMS``), tried in that order on one selection;
        a card without the applet, or one that refuses every form, raises
        ``LaserUnavailable``: the rest of the read stands.
        """
        try:
            yield from self.select_script(L.LASER_AID, "select_laser")
        except (NotThaiIdCard, ApduFailed) as exc:
            raise LaserUnavailable(f"no laser applet ({exc})") from None
        refused: list[str] = []
        for command, fetch in L.LASER_FORMS:
            response = yield command
            sw = sw_of(response)
            if sw == SW_OK and len(response) > 2:        # the reader fetched it already
                return response[:-2], command
            if (sw >> 8) == 0x61:
                try:
                    data = yield from self.fetch_script(fetch or (sw & 0xFF) or 0x100,
                                                        "laser_id")
                except ApduFailed as exc:
                    refused.append(f"{command.hex(' ').upper()}: {exc.sw:04X}")
                    continue
                if data:
                    return data, command
            refused.append(f"{command.hex(' ').upper()}: {sw:04X}")
        raise LaserUnavailable("every laser id command refused: " + "; ".join(refused))
