"""A simulated Thai ID card: answers command APDUs from a file image. Pure, no I/O.

The demo reader runs it in-process; the PC/SC tests put it behind the vpcd virtual reader.
Behaviour follows the public descriptions of real cards, including the ``3B 67``
generation's GET RESPONSE P2 and ``6C xx`` for a wrong length.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import layout as L

# Historical bytes spell "TH NID n"; the 3B 67 generation has no public full ATR, so ours
# keeps the two bytes the rule depends on and fills the rest plausibly.
ATR_3B68 = bytes.fromhex("3B68000054482049442036")
ATR_3B78 = bytes.fromhex("3B781800005448204E49442031")
ATR_3B79 = bytes.fromhex("3B791800005448204E4944203130")
ATR_3B67 = bytes.fromhex("3B6700005448204E4944")
ATR_NOT_THAI = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")


def sw(value: int) -> bytes:
    return bytes([value >> 8, value & 0xFF])


@dataclass
class SimulatedCard:
    """A card's applets and how strict it is. ``process`` answers one APDU."""

    moi_image: bytes
    atr: bytes = ATR_3B79
    nhso_image: bytes | None = None
    laser_answer: bytes | None = None
    # Answer 6B 00 to GET RESPONSE with the P2 the ATR rule does not call for.
    strict_p2: bool = True
    is_thai_id: bool = True

    def __post_init__(self) -> None:
        self._selected: bytes | None = None
        self._pending: bytes | None = None
        self.apdus = 0

    @property
    def expected_p2(self) -> int:
        return 0x01 if self.atr[:2] == b"\x3b\x67" else 0x00

    def reset(self) -> None:
        self._selected = None
        self._pending = None

    def _applets(self) -> dict[bytes, bytes | None]:
        applets: dict[bytes, bytes | None] = {}
        if self.is_thai_id:
            applets[L.MOI_AID] = self.moi_image
            if self.nhso_image is not None:
                applets[L.NHSO_AID] = self.nhso_image
        if self.laser_answer is not None:
            applets[bytes.fromhex("A000000084060002")] = None
        return applets

    def process(self, apdu: bytes) -> bytes:
        self.apdus += 1
        if len(apdu) < 4:
            return sw(0x6700)
        cla, ins, p1, p2 = apdu[:4]
        if (cla, ins) == (0x00, 0xA4):
            return self._select(apdu)
        if (cla, ins) == (0x80, 0xB0):
            return self._read(apdu, p1, p2)
        if (cla, ins) == (0x00, 0xC0):
            return self._get_response(apdu, p2)
        if (cla, ins) == (0x80, 0x00) and self._selected == bytes.fromhex("A000000084060002"):
            self._pending = self.laser_answer
            return sw(0x6100 | len(self.laser_answer or b""))
        if cla not in (0x00, 0x80):
            return sw(0x6E00)
        return sw(0x6D00)

    def _select(self, apdu: bytes) -> bytes:
        if len(apdu) < 5 or apdu[2:4] != b"\x04\x00":
            return sw(0x6A86)
        aid = apdu[5:5 + apdu[4]]
        if aid not in self._applets():
            self._selected = None
            return sw(0x6A82)
        self._selected = aid
        self._pending = None
        return sw(0x610A)

    def _read(self, apdu: bytes, p1: int, p2: int) -> bytes:
        image = self._applets().get(self._selected) if self._selected else None
        if image is None:
            return sw(0x6986)          # no file selected
        if len(apdu) != 7 or apdu[4] != 0x02 or apdu[5] != 0x00:
            return sw(0x6700)
        offset, length = (p1 << 8) | p2, apdu[6]
        if offset + length > len(image):
            return sw(0x6B00)
        self._pending = image[offset:offset + length]
        return sw(0x6100 | length)

    def _get_response(self, apdu: bytes, p2: int) -> bytes:
        if self._pending is None:
            return sw(0x6985)
        if self.strict_p2 and p2 != self.expected_p2:
            return sw(0x6B00)
        le = apdu[4] if len(apdu) >= 5 else 0
        if le != len(self._pending) & 0xFF:
            return sw(0x6C00 | (len(self._pending) & 0xFF))
        data, self._pending = self._pending, None
        return data + sw(0x9000)
