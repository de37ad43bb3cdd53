"""Values -> the card's file image: the inverse of ``decode``.

Used by the simulated reader (demo mode), by the virtual card of the PC/SC tests and by
round-trip tests. Raises ``ValueError`` for values a real card could not hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, assert_never

from . import layout as L
from .values import ADDRESS_PARTS, Address, CardDate, CardProfile, Gender, Name, NhsoCoverage

PHOTO_PAD = b"\x00"


def encode_text(value: str, f: L.Field, *, pad: bytes = b" ") -> bytes:
    data = value.encode("cp874")
    if len(data) > f.length:
        raise ValueError(f"{f.name}: {len(data)} bytes do not fit in {f.length}")
    return data.ljust(f.length, pad)


def encode_name(name: Name, f: L.Field) -> bytes:
    parts = (name.prefix, name.first, name.middle, name.last)
    if any("#" in p for p in parts):
        raise ValueError(f"{f.name}: '#' separates name parts and cannot be inside one")
    return encode_text("#".join(parts), f)


def encode_date(value: CardDate, f: L.Field) -> bytes:
    return encode_text(value.raw, f)


def encode_gender(value: Gender, f: L.Field) -> bytes:
    return encode_text(value.raw, f)


def encode_address(value: Address, f: L.Field) -> bytes:
    if len(value.parts) != ADDRESS_PARTS or any("#" in p for p in value.parts):
        raise ValueError(f"{f.name}: exactly 8 parts, none containing '#'")
    return encode_text(value.raw, f)


def encode_photo(photo: bytes) -> bytes:
    if len(photo) > L.PHOTO.length:
        raise ValueError(f"photo: {len(photo)} bytes do not fit in {L.PHOTO.length}")
    return photo.ljust(L.PHOTO.length, PHOTO_PAD)


def encode_field(f: L.Field, value: Any) -> bytes:
    """One field's bytes (exactly ``f.length``) for ``value``, by the field's kind."""
    match f.kind:
        case L.Kind.TEXT:
            return encode_text(value, f)
        case L.Kind.NAME:
            return encode_name(value, f)
        case L.Kind.DATE:
            return encode_date(value, f)
        case L.Kind.GENDER:
            return encode_gender(value, f)
        case L.Kind.ADDRESS:
            return encode_address(value, f)
        case L.Kind.PHOTO:
            return encode_photo(value)
        case L.Kind.LENGTH:
            if not 0 <= value < 1 << (8 * f.length):
                raise ValueError(f"{f.name}: {value} does not fit in {f.length} bytes")
            return int(value).to_bytes(f.length, "big")
        case _:
            assert_never(f.kind)


def _encode_file(fields: tuple[L.Field, ...], size: int,
                 value: Callable[[L.Field], Any]) -> bytes:
    """The file image: spaces, with every field written at its offset (``value(field)``)."""
    image = bytearray(b" " * size)
    for f in fields:
        data = encode_field(f, value(f))
        assert len(data) == f.length, f.name
        image[f.offset:f.end] = data
    return bytes(image)


def encode_card(profile: CardProfile) -> bytes:
    """The MOI applet's whole file (0x0000..0x1626) for ``profile``."""
    return _encode_file(L.FIELDS, L.FILE_SIZE, profile.value)


def encode_nhso(cov: NhsoCoverage) -> bytes:
    """The NHSO applet's file (0x0000..0x015D) for ``cov``."""
    return _encode_file(L.NHSO_FIELDS, L.NHSO_FILE_SIZE, lambda f: getattr(cov, f.name))
