"""Values held on a Thai national ID card, with their parsed views.

Each value keeps what the card holds (``raw``) and derives the parsed view from it, so a
real card that disagrees with the public descriptions can still be shown and corrected.
``CardText`` and ``NhsoCoverage`` hold one attribute per field of their layout table
(``layout.py``), and their ``/v1`` JSON is written from that table (``fields_json``).
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field, fields
from typing import Any, assert_never

from . import layout as L

BE_OFFSET = 543  # Buddhist era year - 543 = Gregorian year
LIFELONG = "99999999"


def citizen_id_check_digit(first12: str) -> int:
    """Mod-11 check digit of a 13-digit Thai citizen id."""
    total = sum(int(d) * (13 - i) for i, d in enumerate(first12[:12]))
    return (11 - total % 11) % 10


def citizen_id_valid(cid: str) -> bool:
    return (len(cid) == 13 and cid.isascii() and cid.isdigit()
            and citizen_id_check_digit(cid) == int(cid[12]))


def mask_citizen_id(cid: str) -> str:
    """``1-2345-xxxxx-xx-3`` style mask shown on screens that must not show the full id."""
    if len(cid) != 13:
        return "x" * len(cid)
    return f"{cid[0]}-{cid[1:5]}-xxxxx-xx-{cid[12]}"


@dataclass(frozen=True)
class Name:
    prefix: str = ""
    first: str = ""
    middle: str = ""
    last: str = ""

    def full(self, *, thai: bool) -> str:
        # Thai writes the title attached to the first name ("นายสมชาย"); English spaces it.
        given = " ".join(p for p in (self.first, self.middle) if p)
        head = (self.prefix + given) if thai else " ".join(p for p in (self.prefix, given) if p)
        return " ".join(p for p in (head, self.last) if p)

    def to_json(self, *, thai: bool) -> dict[str, str]:
        return {"prefix": self.prefix, "first": self.first, "middle": self.middle,
                "last": self.last, "full": self.full(thai=thai)}


@dataclass(frozen=True)
class CardDate:
    """A Buddhist-era ``YYYYMMDD`` date where month/day may be ``00`` (unknown)."""

    raw: str

    @property
    def lifelong(self) -> bool:
        return self.raw == LIFELONG

    def _parts(self) -> tuple[int, int, int] | None:
        if len(self.raw) != 8 or not (self.raw.isascii() and self.raw.isdigit()) or self.lifelong:
            return None
        return int(self.raw[:4]), int(self.raw[4:6]), int(self.raw[6:])

    @property
    def precision(self) -> str:
        """``day``, ``month``, ``year`` (what is known), ``lifelong``, ``none`` or ``invalid``."""
        if self.lifelong:
            return "lifelong"
        if self.raw.strip("0 ") == "":
            return "none"
        parts = self._parts()
        if parts is None:
            return "invalid"
        year_be, month, day = parts
        year = year_be - BE_OFFSET
        if year < 1 or month > 12:
            return "invalid"
        if month == 0:
            return "year" if day == 0 else "invalid"
        if day == 0:
            return "month"
        try:
            _dt.date(year, month, day)
        except ValueError:
            return "invalid"
        return "day"

    @property
    def year(self) -> int | None:
        """Gregorian year, when known."""
        if self.precision not in ("day", "month", "year"):
            return None
        return int(self.raw[:4]) - BE_OFFSET

    @property
    def month(self) -> int | None:
        return int(self.raw[4:6]) if self.precision in ("day", "month") else None

    @property
    def day(self) -> int | None:
        return int(self.raw[6:]) if self.precision == "day" else None

    @property
    def iso(self) -> str | None:
        """ISO 8601 at the precision known: ``1987-01-15``, ``1987-01`` or ``1987``."""
        p = self.precision
        if p == "day":
            return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"
        if p == "month":
            return f"{self.year:04d}-{self.month:02d}"
        if p == "year":
            return f"{self.year:04d}"
        return None

    def as_date(self) -> _dt.date | None:
        year, month, day = self.year, self.month, self.day     # the day is known only with all
        return None if year is None or month is None or day is None else _dt.date(year, month, day)

    def to_json(self) -> dict[str, Any]:
        return {"raw": self.raw, "iso": self.iso, "precision": self.precision,
                "lifelong": self.lifelong, "year": self.year, "month": self.month,
                "day": self.day}


GENDER_LABELS = {"1": ("male", "ชาย"), "2": ("female", "หญิง")}


@dataclass(frozen=True)
class Gender:
    raw: str

    @property
    def en(self) -> str:
        return GENDER_LABELS.get(self.raw, ("unknown", ""))[0]

    @property
    def th(self) -> str:
        return GENDER_LABELS.get(self.raw, ("", "ไม่ระบุ"))[1]

    def to_json(self) -> dict[str, str]:
        return {"raw": self.raw, "en": self.en, "th": self.th}


ADDRESS_PARTS = 8
# Prefixes that say what a middle part of the address is; sources disagree on the order.
MIDDLE_PREFIXES = (("moo", "หมู่ที่"), ("trok", "ตรอก"), ("soi", "ซอย"), ("road", "ถนน"))
SUBDISTRICT_PREFIXES = ("ตำบล", "แขวง")
DISTRICT_PREFIXES = ("อำเภอ", "เขต")
PROVINCE_PREFIXES = ("จังหวัด",)


def _without_prefix(text: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if text.startswith(prefix):
            return text[len(prefix):].strip()
    return text


@dataclass(frozen=True)
class Address:
    """The 8 ``#``-separated address parts, kept as on the card, with a classified view."""

    parts: tuple[str, ...] = ("",) * ADDRESS_PARTS

    @property
    def raw(self) -> str:
        return "#".join(self.parts)

    @property
    def house_no(self) -> str:
        return self.parts[0]

    def _middle(self) -> dict[str, str]:
        found: dict[str, str] = {}
        other: list[str] = []
        for part in self.parts[1:ADDRESS_PARTS - 3]:
            if not part:
                continue
            for key, prefix in MIDDLE_PREFIXES:
                if part.startswith(prefix) and key not in found:
                    found[key] = part[len(prefix):].strip()
                    break
            else:
                other.append(part)
        if other:
            found["other"] = " ".join(other)
        return found

    @property
    def subdistrict(self) -> str:
        return _without_prefix(self.parts[-3], SUBDISTRICT_PREFIXES)

    @property
    def district(self) -> str:
        return _without_prefix(self.parts[-2], DISTRICT_PREFIXES)

    @property
    def province(self) -> str:
        return _without_prefix(self.parts[-1], PROVINCE_PREFIXES)

    @property
    def full(self) -> str:
        return " ".join(p for p in self.parts if p)

    def to_json(self) -> dict[str, Any]:
        middle = self._middle()
        return {
            "raw": self.raw, "parts": list(self.parts), "full": self.full,
            "house_no": self.house_no, "moo": middle.get("moo", ""),
            "trok": middle.get("trok", ""), "soi": middle.get("soi", ""),
            "road": middle.get("road", ""), "other": middle.get("other", ""),
            "subdistrict": self.subdistrict, "district": self.district,
            "province": self.province,
        }


def format_photo_number(raw: str) -> str:
    """The number printed under the photo, as printed: ``XXXX-XX-XXXXXXXX``."""
    if len(raw) != 14:
        return raw
    return f"{raw[:4]}-{raw[4:6]}-{raw[6:]}"


_REQUEST_NUMBER = re.compile(r"[0-9]{11}/[0-9]{8}")


def request_number_well_formed(raw: str) -> bool:
    """``NNNNNNNNNNN/NNNNNNNN``, as the sources describe the request number (0x00E2)."""
    return _REQUEST_NUMBER.fullmatch(raw) is not None


@dataclass(frozen=True)
class CardText:
    """Every text field of the MOI applet (everything but the photo): ``L.FIELDS``' names."""

    citizen_id: str
    name_th: Name
    name_en: Name
    birth_date: CardDate
    gender: Gender
    issuer: str
    issue_date: CardDate
    expiry_date: CardDate
    address: Address
    number_under_photo: str = ""
    issuer_code: str = ""
    version: str = ""
    request_number: str = ""
    card_type: str = ""
    photo_length: int = 0

    @property
    def citizen_id_valid(self) -> bool:
        return citizen_id_valid(self.citizen_id)

    def to_json(self) -> dict[str, Any]:
        return fields_json(L.FIELDS, self)


@dataclass(frozen=True)
class CardProfile:
    """Everything a card holds: the encoder's input and the full decoder's output."""

    text: CardText
    photo: bytes = field(default=b"", repr=False)

    def value(self, f: L.Field) -> Any:
        """The value of one layout field (``L.FIELDS``) on this card."""
        return self.photo if f.kind is L.Kind.PHOTO else getattr(self.text, f.name)


@dataclass(frozen=True)
class NhsoCoverage:
    """The optional NHSO applet's fields (raw strings; meanings are not confirmed)."""

    main_inscl: str
    sub_inscl: str
    main_hospital: str
    sub_hospital: str
    paid_type: str
    issue_date: CardDate
    expiry_date: CardDate
    update_date: CardDate
    change_count: str

    def to_json(self) -> dict[str, Any]:
        return fields_json(L.NHSO_FIELDS, self)


def view_json(f: L.Field, value: Any) -> dict[str, Any]:
    """The JSON keys (one, or two for a checked id) that ``value`` of field ``f`` is shown as."""
    match f.view:
        case L.View.TEXT:
            return {f.name: value}
        case L.View.CHECKED:
            return {f.name: value, f"{f.name}_valid": citizen_id_valid(value)}
        case L.View.NAME_TH | L.View.NAME_EN:
            return {f.name: value.to_json(thai=f.view is L.View.NAME_TH)}
        case L.View.PARSED:
            return {f.name: value.to_json()}
        case L.View.PRINTED:
            return {f.name: {"raw": value, "formatted": format_photo_number(value)}}
        case L.View.REQUEST:
            return {f.name: {"raw": value, "well_formed": request_number_well_formed(value)}}
        case L.View.NUMBER:
            return {f.name: value}
        case L.View.NONE:
            return {}
        case _:
            assert_never(f.view)


def fields_json(table: tuple[L.Field, ...], values: object) -> dict[str, Any]:
    """The ``/v1`` JSON of ``values`` (attributes named as the table's fields).

    Top-level fields come in file order, then each group's fields, in file order too: the
    person first, then what describes the card itself.
    """
    out: dict[str, Any] = {}
    for f in table:
        if not f.group and f.view is not L.View.NONE:
            out.update(view_json(f, getattr(values, f.name)))
    for group in L.json_groups(table):
        out[group] = {}
        for f in table:
            if f.group == group:
                out[group].update(view_json(f, getattr(values, f.name)))
    return out


def _check_table(cls: type, table: tuple[L.Field, ...]) -> None:
    """The value class and its layout table name the same fields (one cannot drift alone)."""
    attrs = {a.name for a in fields(cls)}
    named = {f.name for f in table if f.kind is not L.Kind.PHOTO}
    if attrs != named:
        raise RuntimeError(f"{cls.__name__} and its layout disagree: {sorted(attrs ^ named)}")


_check_table(CardText, L.FIELDS)
_check_table(NhsoCoverage, L.NHSO_FIELDS)
