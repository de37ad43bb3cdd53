"""The card's fields, once: where each lives in its applet's file and how it is shown.

``FIELDS`` (the MOI applet) and ``NHSO_FIELDS`` (the optional NHSO applet) are the only
lists of the card's fields. Everything else reads them:

- ``decode.py`` turns each field's bytes into a value by its ``kind``, ``encode.py`` turns
  the value back (the simulator and the virtual card serve what it writes);
- ``values.py`` writes each value into the ``/v1`` JSON under the field's ``name``, in the
  shape its ``view`` names, nested under ``group`` when it has one;
- ``agent/api/compat.py`` fills the NHSO agent keys listed in ``compat`` from the value;
- ``agent/api/openapi.py`` describes the ``/v1`` card from the same rows.

Adding a field: one row here, the attribute on ``CardText`` in ``values.py`` (with a default,
so profiles built by name still build; an import-time check holds the two together) and,
when no kind or view fits, a decoder and encoder for the new kind or a renderer for the new
view (``match`` statements that mypy checks are exhaustive).
Pure data: this module imports nothing from the rest of the agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

MOI_AID = bytes.fromhex("A000000054480001")
NHSO_AID = bytes.fromhex("A000000054480083")
LASER_AID = bytes.fromhex("A000000084060002")
# The laser id's command forms in use, in the order they are tried: (command, the length
# GET RESPONSE asks for, 0 = what the card's 61xx says). The header alone is the most
# self-consistent recipe (a 23-byte record, the id at bytes 7-22); 80 00 00 00 07 answers
# 12 characters + 4 NULs on GET RESPONSE 10; 80 00 00 00 FF is the third form seen.
LASER_FORMS: tuple[tuple[bytes, int], ...] = (
    (bytes.fromhex("80000000"), 0),
    (bytes.fromhex("8000000007"), 0x10),
    (bytes.fromhex("80000000FF"), 0),
)

MAX_READ = 0xFF  # one READ BINARY-like command returns at most 255 bytes


class Kind(Enum):
    """How a field's bytes hold its value: one decoder and one encoder per kind."""

    TEXT = "text"          # TIS-620 (read as cp874), padded with spaces or NULs -> str
    NAME = "name"          # prefix#first#middle#last -> Name
    DATE = "date"          # Buddhist-era YYYYMMDD, 00 for an unknown month or day -> CardDate
    GENDER = "gender"      # one digit, 1 male / 2 female -> Gender
    ADDRESS = "address"    # 8 '#'-separated parts -> Address
    PHOTO = "photo"        # a JPEG padded with NULs -> bytes
    LENGTH = "length"      # a big-endian unsigned number (the photo's own length) -> int


class View(Enum):
    """The shape of a value in the ``/v1`` JSON, under the field's name."""

    TEXT = "text"          # the text as read: it is its own raw form
    CHECKED = "checked"    # the text, and a sibling "<name>_valid": its check digit holds
    NAME_TH = "name_th"    # the name's parts and its Thai full form (title joined to the name)
    NAME_EN = "name_en"    # the name's parts and its English full form (title spaced)
    PARSED = "parsed"      # the value's own to_json(): the raw text kept beside every parsed part
    PRINTED = "printed"    # {"raw", "formatted"}: raw kept beside the form printed on the card
    REQUEST = "request"    # {"raw", "well_formed"}: the request number, NNNNNNNNNNN/NNNNNNNN
    NUMBER = "number"      # the number as read (a raw field: out of range stays as it is)
    NONE = "none"          # not in the text JSON (the photo: the read describes it)


@dataclass(frozen=True)
class Field:
    name: str              # attribute on CardText / NhsoCoverage, and the /v1 JSON key
    offset: int
    length: int
    kind: Kind = Kind.TEXT
    view: View = View.TEXT
    group: str = ""        # /v1 JSON: nested under this key, after the top-level fields
    compat: tuple[str, ...] = ()   # NHSO agent keys made from this field (api/compat.py)
    doc: str = ""          # what the card means by it (the OpenAPI description)

    @property
    def end(self) -> int:
        return self.offset + self.length

    def cut(self, image: bytes, base: int = 0) -> bytes:
        """This field's slice out of a block that starts at file offset ``base``."""
        start = self.offset - base
        return image[start:start + self.length]


# The MOI applet's file, in file order: every byte from 0x0000 to the end belongs to one
# field (checked below), so the reads can cover the file in a few spans.
FIELDS: tuple[Field, ...] = (
    #     name              offset  length  kind          view          JSON group, NHSO keys
    Field("version",        0x0000,    4,  Kind.TEXT,    View.TEXT,    group="card",
          doc="Data format version, raw (\"0002\", \"0003\", \"0004\" seen)"),
    Field("citizen_id",     0x0004,   13,  Kind.TEXT,    View.CHECKED, compat=("pid", "nation")),
    Field("name_th",        0x0011,  100,  Kind.NAME,    View.NAME_TH,
          compat=("titleName", "fname", "lname", "titleNameText", "mname")),
    Field("name_en",        0x0075,  100,  Kind.NAME,    View.NAME_EN),
    Field("birth_date",     0x00D9,    8,  Kind.DATE,    View.PARSED,  compat=("birthDate", "age")),
    Field("gender",         0x00E1,    1,  Kind.GENDER,  View.PARSED,  compat=("sex",)),
    Field("request_number", 0x00E2,   20,  Kind.TEXT,    View.REQUEST,
          doc="The card's request number, NNNNNNNNNNN/NNNNNNNN (vendor SDKs: RequestNo)"),
    Field("issuer",         0x00F6,  100,  Kind.TEXT,    View.TEXT),
    Field("issuer_code",    0x015A,   13,  Kind.TEXT,    View.TEXT),
    Field("issue_date",     0x0167,    8,  Kind.DATE,    View.PARSED),
    Field("expiry_date",    0x016F,    8,  Kind.DATE,    View.PARSED),
    Field("card_type",      0x0177,    2,  Kind.TEXT,    View.TEXT,    group="card",
          doc="Card type, raw (\"01\" seen)"),
    Field("photo_length",   0x0179,    2,  Kind.LENGTH,  View.NUMBER,  group="card",
          doc="The photo's length in bytes as the card states it (big-endian), raw: "
              "cards without it hold other bytes here"),
    Field("photo",          0x017B, 5118,  Kind.PHOTO,   View.NONE,    compat=("image",)),
    Field("address",        0x1579,  160,  Kind.ADDRESS, View.PARSED),
    Field("number_under_photo", 0x1619, 14, Kind.TEXT,   View.PRINTED,
          doc="The number printed under the photo (vendor SDKs: PhotoRefNo)"),
)

# The optional NHSO coverage applet (not on every card); its fields are raw strings whose
# meanings are not confirmed, so none feeds the NHSO agent's keys.
NHSO_FIELDS: tuple[Field, ...] = (
    Field("main_inscl",     0x0004,   60,  Kind.TEXT,    View.TEXT),
    Field("sub_inscl",      0x0040,  100,  Kind.TEXT,    View.TEXT),
    Field("main_hospital",  0x00A4,   80,  Kind.TEXT,    View.TEXT),
    Field("sub_hospital",   0x00F4,   80,  Kind.TEXT,    View.TEXT),
    Field("paid_type",      0x0144,    1,  Kind.TEXT,    View.TEXT),
    Field("issue_date",     0x0145,    8,  Kind.DATE,    View.PARSED),
    Field("expiry_date",    0x014D,    8,  Kind.DATE,    View.PARSED),
    Field("update_date",    0x0155,    8,  Kind.DATE,    View.PARSED),
    Field("change_count",   0x015D,    1,  Kind.TEXT,    View.TEXT),
)


def _by_name(fields: tuple[Field, ...]) -> dict[str, Field]:
    return {f.name: f for f in fields}


BY_NAME = _by_name(FIELDS)
NHSO_BY_NAME = _by_name(NHSO_FIELDS)

PHOTO = BY_NAME["photo"]
FILE_SIZE = FIELDS[-1].end

# The read plan: the fields before the photo are one block, the fields after it another,
# so two spans (three with the photo) cover every field.
TEXT_FIELDS = tuple(f for f in FIELDS if f.end <= PHOTO.offset)
TAIL_FIELDS = tuple(f for f in FIELDS if f.offset >= PHOTO.end)
TEXT_BLOCK = Field("text_block", 0x0000, PHOTO.offset)
TAIL_BLOCK = Field("tail_block", PHOTO.end, FILE_SIZE - PHOTO.end)

NHSO_BLOCK = Field("nhso_block", NHSO_FIELDS[0].offset,
                   NHSO_FIELDS[-1].end - NHSO_FIELDS[0].offset)
NHSO_FILE_SIZE = NHSO_FIELDS[-1].end

# Handles on single fields, for code and tests that name one.
VERSION = BY_NAME["version"]
CITIZEN_ID = BY_NAME["citizen_id"]
NAME_TH = BY_NAME["name_th"]
NAME_EN = BY_NAME["name_en"]
BIRTH_DATE = BY_NAME["birth_date"]
GENDER = BY_NAME["gender"]
ISSUER = BY_NAME["issuer"]
ISSUER_CODE = BY_NAME["issuer_code"]
ISSUE_DATE = BY_NAME["issue_date"]
EXPIRY_DATE = BY_NAME["expiry_date"]
CARD_TYPE = BY_NAME["card_type"]
PHOTO_LENGTH = BY_NAME["photo_length"]
ADDRESS = BY_NAME["address"]
REQUEST_NUMBER = BY_NAME["request_number"]
NUMBER_UNDER_PHOTO = BY_NAME["number_under_photo"]


def json_groups(fields: tuple[Field, ...]) -> tuple[str, ...]:
    """The JSON groups, in the order they follow the top-level fields."""
    return tuple(dict.fromkeys(f.group for f in fields if f.group))


def _check(fields: tuple[Field, ...], start: int) -> None:
    """A row typed wrong must stop the agent at import, not misread every card."""
    if len(_by_name(fields)) != len(fields):
        raise RuntimeError("card layout: two fields share a name")
    at = start
    for f in fields:
        if f.offset != at or f.length <= 0:
            raise RuntimeError(f"card layout: {f.name} at {f.offset:#06x}, expected {at:#06x}")
        at = f.end
    compat = [key for f in fields for key in f.compat]
    if len(set(compat)) != len(compat):
        raise RuntimeError("card layout: an NHSO agent key is made from two fields")


_check(FIELDS, 0x0000)
_check(NHSO_FIELDS, NHSO_FIELDS[0].offset)
if ([f for f in FIELDS if f.kind is Kind.PHOTO] != [PHOTO]
        or (*TEXT_FIELDS, PHOTO, *TAIL_FIELDS) != FIELDS or not TEXT_FIELDS or not TAIL_FIELDS):
    raise RuntimeError("card layout: exactly one photo, with text fields on both sides")
