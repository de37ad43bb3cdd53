"""Hypothesis strategies for card values a real card can hold."""

from __future__ import annotations

from hypothesis import strategies as st

from agent.card import layout as L
from agent.card.values import ADDRESS_PARTS, Address, CardDate, CardProfile, CardText, Gender, Name

# Every character cp874 can encode, but the name/address separator and control bytes.
_CP874 = [bytes([b]).decode("cp874", errors="replace") for b in range(0x20, 0x100)]
ALPHABET = "".join(sorted({c for c in _CP874 if c not in ("\ufffd", "#", "\x7f")}))
THAI = "".join(c for c in ALPHABET if "\u0e00" <= c <= "\u0e7f")


def _fits(limit: int):
    return lambda s: len(s.encode("cp874")) <= limit


def text(limit: int, alphabet: str = ALPHABET, min_size: int = 0) -> st.SearchStrategy[str]:
    """Stripped text whose cp874 form fits ``limit`` bytes (padding is stripped on read)."""
    return (st.text(alphabet, min_size=min_size, max_size=limit)
            .map(lambda s: s.strip(" "))
            .filter(_fits(limit)))


def name(limit: int) -> st.SearchStrategy[Name]:
    part = text(40)
    return (st.builds(Name, part, part, st.one_of(st.just(""), part), part)
            .filter(lambda n: len("#".join((n.prefix, n.first, n.middle, n.last))
                                  .encode("cp874")) <= limit))


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=n, max_size=n)


@st.composite
def card_date(draw: st.DrawFn) -> CardDate:
    kind = draw(st.sampled_from(["full", "month", "year", "lifelong", "junk"]))
    year = draw(st.integers(2400, 2700))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, 28))
    raw = {
        "full": f"{year:04d}{month:02d}{day:02d}",
        "month": f"{year:04d}{month:02d}00",
        "year": f"{year:04d}0000",
        "lifelong": "99999999",
        "junk": draw(text(8)),
    }[kind]
    return CardDate(raw)


def address() -> st.SearchStrategy[Address]:
    parts = st.lists(text(40), min_size=ADDRESS_PARTS, max_size=ADDRESS_PARTS).map(tuple)
    return (st.builds(Address, parts)
            .filter(lambda a: len(a.raw.encode("cp874")) <= L.ADDRESS.length))


# Text fields whose real content is digits (the rest may hold any text that fits).
DIGIT_FIELDS = ("citizen_id", "number_under_photo", "issuer_code")


def photo() -> st.SearchStrategy[bytes]:
    """A JPEG-framed photo that fits the field (its one end marker is the last)."""
    body = st.binary(min_size=0, max_size=L.PHOTO.length - 4)
    return body.map(lambda b: b"\xff\xd8" + b.replace(b"\xff\xd9", b"\xff\x00") + b"\xff\xd9")


def field_value(f: L.Field) -> st.SearchStrategy:
    """Values a real card can hold in field ``f``, by the field's kind."""
    match f.kind:
        case L.Kind.TEXT:
            return digits(f.length) if f.name in DIGIT_FIELDS else text(f.length)
        case L.Kind.NAME:
            return name(f.length)
        case L.Kind.DATE:
            return card_date()
        case L.Kind.GENDER:
            return st.sampled_from(["1", "2", "", "0"]).map(Gender)
        case L.Kind.ADDRESS:
            return address()
        case L.Kind.PHOTO:
            return photo()
        case L.Kind.LENGTH:
            return st.integers(0, (1 << (8 * f.length)) - 1)
    raise AssertionError(f"no strategy for {f.kind}")


@st.composite
def card_profile(draw: st.DrawFn) -> CardProfile:
    """A whole card: every field of the layout (``L.FIELDS``)."""
    values = {f.name: draw(field_value(f)) for f in L.FIELDS}
    image = values.pop(L.PHOTO.name)
    if draw(st.booleans()):             # most real cards state their photo's length
        values[L.PHOTO_LENGTH.name] = len(image)
    return CardProfile(text=CardText(**values), photo=image)
