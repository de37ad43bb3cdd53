"""Bytes read from the card -> values. Pure: no I/O, only ``CardDataInvalid`` is raised."""

from __future__ import annotations

from typing import Any, assert_never

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
        parts = [*parts[:3], " ".join(p for p in parts[3:] if p)]
    if len(parts) == 3:                 # prefix#first#last: no middle slot at all
        parts.insert(2, "")
    parts += [""] * (4 - len(parts))
    return Name(*parts)


def decode_address(data: bytes) -> Address:
    text = data.decode("cp874", errors="replace").strip(_PAD)
    parts = [p.strip(_PAD) for p in text.split("#")]
    if len(parts) > ADDRESS_PARTS:
        # More separators than parts: keep the tail in the province slot, lose nothing.
        parts = [*parts[:ADDRESS_PARTS - 1], "#".join(parts[ADDRESS_PARTS - 1:])]
    parts += [""] * (ADDRESS_PARTS - len(parts))
    return Address(tuple(parts))


def decode_date(data: bytes) -> CardDate:
    return CardDate(decode_text(data))


def decode_gender(data: bytes) -> Gender:
    return Gender(decode_text(data))


def decode_field(f: L.Field, data: bytes) -> Any:
    """One field's value from its bytes, by the field's kind."""
    match f.kind:
        case L.Kind.TEXT:
            return decode_text(data)
        case L.Kind.NAME:
            return decode_name(data)
        case L.Kind.DATE:
            return decode_date(data)
        case L.Kind.GENDER:
            return decode_gender(data)
        case L.Kind.ADDRESS:
            return decode_address(data)
        case L.Kind.PHOTO:
            return decode_photo(data)
        case L.Kind.LENGTH:
            return int.from_bytes(data, "big")
        case _:
            assert_never(f.kind)


def _decode_block(fields: tuple[L.Field, ...], block: bytes, base: int) -> dict[str, Any]:
    return {f.name: decode_field(f, f.cut(block, base)) for f in fields}


def decode_text_fields(block: bytes, tail: bytes) -> CardText:
    """Decode the text block (every field before the photo) and the tail block (after it)."""
    if len(block) != L.TEXT_BLOCK.length:
        raise CardDataInvalid(f"text block is {len(block)} bytes, expected {L.TEXT_BLOCK.length}")
    if len(tail) != L.TAIL_BLOCK.length:
        raise CardDataInvalid(f"address block is {len(tail)} bytes, expected {L.TAIL_BLOCK.length}")
    return CardText(**_decode_block(L.TEXT_FIELDS, block, L.TEXT_BLOCK.offset),
                    **_decode_block(L.TAIL_FIELDS, tail, L.TAIL_BLOCK.offset))


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
    """Decode the NHSO applet's block (every field of ``L.NHSO_FIELDS``)."""
    if len(block) != L.NHSO_BLOCK.length:
        raise CardDataInvalid(f"NHSO block is {len(block)} bytes, expected {L.NHSO_BLOCK.length}")
    return NhsoCoverage(**_decode_block(L.NHSO_FIELDS, block, L.NHSO_BLOCK.offset))


LASER_RECORD = 23      # the header-alone form's record: the id at bytes 7-22


def decode_laser_id(response: bytes) -> str:
    """The laser id printed on the back: from the 23-byte record, or the bare 16 bytes
    (12 characters + 4 NULs) that ``80 00 00 00 07`` + GET RESPONSE ``10`` answers."""
    if len(response) >= LASER_RECORD:
        data = response[7:LASER_RECORD]
    elif len(response) == 16:
        data = response
    else:
        raise CardDataInvalid(f"laser id answer is {len(response)} bytes, expected 23 or 16")
    text = data.decode("ascii", errors="replace").strip(_PAD)
    if not text:
        raise CardDataInvalid("laser id answer is empty")
    return text
