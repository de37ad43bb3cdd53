"""Bytes read from the card -> values. Pure: no I/O, only ``CardDataInvalid`` is raised."""

from __future__ import annotations

from ..errors import CardDataInvalid
from . import layout as L
from .values import ADDRESS_PARTS, Address, CardDate, CardText, Gender, Name, NhsoCoverage

JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"
_PAD = " \x00"


def decode_text(data: bytes) -> str:
    """TIS-620 text: cp874 (a superset that maps 0xA0), stripped of padding."""
    return data.decode("cp874", errors="replace").strip(_PAD)


def decode_name(data: bytes) -> Name:
    # Split on '#' before any other cleaning: a name without '#' is not a prefix.
    parts = [p.strip(_PAD) for p in data.decode("cp874", errors="replace").split("#")]
    if len(parts) > 4:
        parts = parts[:3] + [" ".join(p for p in parts[3:] if p)]
    parts += [""] * (4 - len(parts))
    return Name(*parts)


def decode_address(data: bytes) -> Address:
    text = data.decode("cp874", errors="replace").strip(_PAD)
    parts = [p.strip(_PAD) for p in text.split("#")]
    if len(parts) > ADDRESS_PARTS:
        # More separators than parts: keep the tail in the province slot, lose nothing.
        parts = parts[:ADDRESS_PARTS - 1] + ["#".join(parts[ADDRESS_PARTS - 1:])]
    parts += [""] * (ADDRESS_PARTS - len(parts))
    return Address(tuple(parts))


def decode_date(data: bytes) -> CardDate:
    return CardDate(decode_text(data))


def decode_text_fields(block: bytes, tail: bytes) -> CardText:
    """Decode the text block (file 0x0000..0x017A) and the tail block (address + request no)."""
    if len(block) != L.TEXT_BLOCK.length:
        raise CardDataInvalid(f"text block is {len(block)} bytes, expected {L.TEXT_BLOCK.length}")
    if len(tail) != L.TAIL_BLOCK.length:
        raise CardDataInvalid(f"address block is {len(tail)} bytes, expected {L.TAIL_BLOCK.length}")

    def field(f: L.Field) -> bytes:
        return f.cut(block, L.TEXT_BLOCK.offset)

    return CardText(
        citizen_id=decode_text(field(L.CITIZEN_ID)),
        name_th=decode_name(field(L.NAME_TH)),
        name_en=decode_name(field(L.NAME_EN)),
        birth_date=decode_date(field(L.BIRTH_DATE)),
        gender=Gender(decode_text(field(L.GENDER))),
        issuer=decode_text(field(L.ISSUER)),
        issue_date=decode_date(field(L.ISSUE_DATE)),
        expiry_date=decode_date(field(L.EXPIRY_DATE)),
        address=decode_address(L.ADDRESS.cut(tail, L.TAIL_BLOCK.offset)),
        request_number=decode_text(L.REQUEST_NUMBER.cut(tail, L.TAIL_BLOCK.offset)),
        issuer_code=decode_text(field(L.ISSUER_CODE)),
        version=decode_text(field(L.VERSION)),
        card_info=decode_text(field(L.CARD_INFO)),
        card_type=decode_text(field(L.CARD_TYPE)),
        unknown_0179=decode_text(field(L.UNKNOWN_0179)),
    )


def decode_photo(data: bytes) -> bytes:
    """The JPEG out of the 5118-byte photo field: cut at the last end marker, never stripped."""
    if len(data) != L.PHOTO.length:
        raise CardDataInvalid(f"photo field is {len(data)} bytes, expected {L.PHOTO.length}")
    if not data.startswith(JPEG_START):
        raise CardDataInvalid("photo does not start with a JPEG marker")
    end = data.rfind(JPEG_END)
    if end < 0:
        raise CardDataInvalid("photo has no JPEG end marker")
    return data[:end + len(JPEG_END)]


def decode_nhso(block: bytes) -> NhsoCoverage:
    """Decode the NHSO applet's block (file 0x0004..0x015D)."""
    if len(block) != L.NHSO_BLOCK.length:
        raise CardDataInvalid(f"NHSO block is {len(block)} bytes, expected {L.NHSO_BLOCK.length}")
    f = L.NhsoLayout

    def text(fl: L.Field) -> str:
        return decode_text(fl.cut(block, L.NHSO_BLOCK.offset))

    return NhsoCoverage(
        main_inscl=text(f.main_inscl), sub_inscl=text(f.sub_inscl),
        main_hospital=text(f.main_hospital), sub_hospital=text(f.sub_hospital),
        paid_type=text(f.paid_type), issue_date=CardDate(text(f.issue_date)),
        expiry_date=CardDate(text(f.expiry_date)), update_date=CardDate(text(f.update_date)),
        change_count=text(f.change_count),
    )


def decode_laser_id(response: bytes) -> str:
    """Experimental: the laser id printed on the back, from the 23-byte answer."""
    if len(response) < 23:
        raise CardDataInvalid(f"laser id answer is {len(response)} bytes, expected 23")
    return response[7:23].decode("ascii", errors="replace").strip(_PAD)
