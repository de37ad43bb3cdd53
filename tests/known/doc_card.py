"""A card that answers APDUs exactly as docs/reference.md ("The card") "Framing" describes.

The agent's own ``SimulatedCard`` is written by the same hands as its reader, so a mistake
shared by both (an offset off by one, the wrong GET RESPONSE P2) would pass. This card is
written from the document's table alone and imports nothing from ``agent``:

| command                              | answer                          |
|--------------------------------------|---------------------------------|
| ``00 A4 04 00 08 <AID>``             | ``61 0A`` (the field (docs/reference.md))      |
| ``80 B0 HH LL 02 00 LL``             | ``61 LL``, no data              |
| ``00 C0 00 P2 LL``                   | ``<LL bytes> 90 00``            |
| ``80 00 00 00`` (laser applet)       | ``61 17``, then 23 bytes        |

P2 is ``01`` when the ATR starts ``3B 67`` and ``00`` otherwise; the other P2 is refused
with ``6B 00`` (docs/pcsc.md: a strict card). It plugs into ``testrig.vpcd_card.VirtualCard``.
"""

from __future__ import annotations

MOI_AID = bytes.fromhex("A0 00 00 00 54 48 00 01")
NHSO_AID = bytes.fromhex("A0 00 00 00 54 48 00 83")
LASER_AID = bytes.fromhex("A0 00 00 00 84 06 00 02")

OK = b"\x90\x00"
FILE_NOT_FOUND = b"\x6a\x82"
WRONG_P1P2 = b"\x6b\x00"
NOT_ALLOWED = b"\x69\x86"
NO_PENDING = b"\x69\x85"
WRONG_LENGTH = b"\x67\x00"
INS_UNKNOWN = b"\x6d\x00"


class DocCard:
    """Files by AID; ``process`` answers one command APDU, ``reset`` is a power cycle."""

    def __init__(self, atr: bytes, moi: bytes, *, nhso: bytes | None = None,
                 laser_answer: bytes | None = None) -> None:
        self.atr = atr
        self.files: dict[bytes, bytes | None] = {MOI_AID: moi}
        if nhso is not None:
            self.files[NHSO_AID] = nhso
        if laser_answer is not None:
            self.files[LASER_AID] = None          # no readable file, only the laser command
        self.laser_answer = laser_answer
        self.commands: list[bytes] = []           # every APDU received, for the tests
        self.reset()

    def reset(self) -> None:
        self.selected: bytes | None = None
        self.pending: bytes | None = None

    @property
    def p2(self) -> int:
        return 0x01 if self.atr[:2] == b"\x3b\x67" else 0x00

    def process(self, apdu: bytes) -> bytes:
        self.commands.append(apdu)
        head = apdu[:4]
        if head == b"\x00\xa4\x04\x00" and len(apdu) >= 5:
            aid = apdu[5:5 + apdu[4]]
            if aid not in self.files:
                self.reset()
                return FILE_NOT_FOUND
            self.selected, self.pending = aid, None
            return b"\x61\x0a"
        if apdu[:2] == b"\x80\xb0" and len(apdu) == 7:
            data = self.files.get(self.selected) if self.selected else None
            if data is None:
                return NOT_ALLOWED
            if apdu[4:6] != b"\x02\x00":
                return WRONG_LENGTH
            offset, length = apdu[2] << 8 | apdu[3], apdu[6]
            if offset + length > len(data):
                return WRONG_P1P2
            self.pending = data[offset:offset + length]
            return bytes([0x61, length])
        if head == b"\x80\x00\x00\x00" and self.selected == LASER_AID and self.laser_answer:
            self.pending = self.laser_answer
            return bytes([0x61, len(self.laser_answer)])
        if apdu[:3] == b"\x00\xc0\x00" and len(apdu) == 5:
            if self.pending is None:
                return NO_PENDING
            if apdu[3] != self.p2:
                return WRONG_P1P2
            if apdu[4] != len(self.pending):
                return bytes([0x6C, len(self.pending)])
            data, self.pending = self.pending, None
            return data + OK
        return INS_UNKNOWN
