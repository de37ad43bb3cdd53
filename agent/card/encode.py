"""Values -> the card's file image: the inverse of ``decode``.

Used by the simulated reader (demo mode), by the virtual card of the PC/SC tests and by
round-trip tests. Raises ``ValueError`` for values a real card could not hold.
"""

from __future__ import annotations

from . import layout as L
from .values import ADDRESS_PARTS, CardDate, CardProfile, CardText, Name, NhsoCoverage

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


def _put(image: bytearray, f: L.Field, data: bytes) -> None:
    assert len(data) == f.length, f.name
    image[f.offset:f.end] = data


def encode_photo(photo: bytes) -> bytes:
    if len(photo) > L.PHOTO.length:
        raise ValueError(f"photo: {len(photo)} bytes do not fit in {L.PHOTO.length}")
    return photo.ljust(L.PHOTO.length, PHOTO_PAD)


def encode_card(profile: CardProfile) -> bytes:
    """The MOI applet's whole file (0x0000..0x1626) for ``profile``."""
    t: CardText = profile.text
    if len(t.address.parts) != ADDRESS_PARTS or any("#" in p for p in t.address.parts):
        raise ValueError("address: exactly 8 parts, none containing '#'")
    image = bytearray(b" " * L.FILE_SIZE)
    _put(image, L.VERSION, encode_text(t.version, L.VERSION))
    _put(image, L.CITIZEN_ID, encode_text(t.citizen_id, L.CITIZEN_ID))
    _put(image, L.NAME_TH, encode_name(t.name_th, L.NAME_TH))
    _put(image, L.NAME_EN, encode_name(t.name_en, L.NAME_EN))
    _put(image, L.BIRTH_DATE, encode_date(t.birth_date, L.BIRTH_DATE))
    _put(image, L.GENDER, encode_text(t.gender.raw, L.GENDER))
    _put(image, L.CARD_INFO, encode_text(t.card_info, L.CARD_INFO))
    _put(image, L.ISSUER, encode_text(t.issuer, L.ISSUER))
    _put(image, L.ISSUER_CODE, encode_text(t.issuer_code, L.ISSUER_CODE))
    _put(image, L.ISSUE_DATE, encode_date(t.issue_date, L.ISSUE_DATE))
    _put(image, L.EXPIRY_DATE, encode_date(t.expiry_date, L.EXPIRY_DATE))
    _put(image, L.CARD_TYPE, encode_text(t.card_type, L.CARD_TYPE))
    _put(image, L.UNKNOWN_0179, encode_text(t.unknown_0179, L.UNKNOWN_0179))
    _put(image, L.PHOTO, encode_photo(profile.photo))
    _put(image, L.ADDRESS, encode_text(t.address.raw, L.ADDRESS))
    _put(image, L.REQUEST_NUMBER, encode_text(t.request_number, L.REQUEST_NUMBER))
    return bytes(image)


def encode_nhso(cov: NhsoCoverage) -> bytes:
    """The NHSO applet's file (0x0000..0x015D) for ``cov``."""
    f = L.NhsoLayout
    image = bytearray(b" " * L.NHSO_FILE_SIZE)
    for fl, value in ((f.main_inscl, cov.main_inscl), (f.sub_inscl, cov.sub_inscl),
                      (f.main_hospital, cov.main_hospital), (f.sub_hospital, cov.sub_hospital),
                      (f.paid_type, cov.paid_type), (f.issue_date, cov.issue_date.raw),
                      (f.expiry_date, cov.expiry_date.raw), (f.update_date, cov.update_date.raw),
                      (f.change_count, cov.change_count)):
        _put(image, fl, encode_text(value, fl))
    return bytes(image)
