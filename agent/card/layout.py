"""Where each field lives in the MOI applet's file (see shared docs: thai-id-card.md)."""

from __future__ import annotations

from dataclasses import dataclass

MOI_AID = bytes.fromhex("A000000054480001")
NHSO_AID = bytes.fromhex("A000000054480083")

MAX_READ = 0xFF  # one READ BINARY-like command returns at most 255 bytes


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length

    def cut(self, image: bytes, base: int = 0) -> bytes:
        """This field's slice out of a block that starts at file offset ``base``."""
        start = self.offset - base
        return image[start:start + self.length]


VERSION = Field("version", 0x0000, 4)
CITIZEN_ID = Field("citizen_id", 0x0004, 13)
NAME_TH = Field("name_th", 0x0011, 100)
NAME_EN = Field("name_en", 0x0075, 100)
BIRTH_DATE = Field("birth_date", 0x00D9, 8)
GENDER = Field("gender", 0x00E1, 1)
CARD_INFO = Field("card_info", 0x00E2, 20)
ISSUER = Field("issuer", 0x00F6, 100)
ISSUER_CODE = Field("issuer_code", 0x015A, 13)
ISSUE_DATE = Field("issue_date", 0x0167, 8)
EXPIRY_DATE = Field("expiry_date", 0x016F, 8)
CARD_TYPE = Field("card_type", 0x0177, 2)
UNKNOWN_0179 = Field("unknown_0179", 0x0179, 2)
PHOTO = Field("photo", 0x017B, 5118)
ADDRESS = Field("address", 0x1579, 160)
REQUEST_NUMBER = Field("request_number", 0x1619, 14)

TEXT_FIELDS = (VERSION, CITIZEN_ID, NAME_TH, NAME_EN, BIRTH_DATE, GENDER, CARD_INFO,
               ISSUER, ISSUER_CODE, ISSUE_DATE, EXPIRY_DATE, CARD_TYPE, UNKNOWN_0179)
TAIL_FIELDS = (ADDRESS, REQUEST_NUMBER)

# The text fields are contiguous from 0x0000 to the photo, and the address is directly
# followed by the request number, so two blocks cover every text field.
TEXT_BLOCK = Field("text_block", 0x0000, PHOTO.offset)
TAIL_BLOCK = Field("tail_block", ADDRESS.offset, REQUEST_NUMBER.end - ADDRESS.offset)

FILE_SIZE = REQUEST_NUMBER.end

assert TEXT_BLOCK.end == PHOTO.offset and PHOTO.end == ADDRESS.offset
assert ADDRESS.end == REQUEST_NUMBER.offset


# The optional NHSO coverage applet (not on every card).
@dataclass(frozen=True)
class NhsoLayout:
    main_inscl = Field("main_inscl", 0x0004, 60)
    sub_inscl = Field("sub_inscl", 0x0040, 100)
    main_hospital = Field("main_hospital", 0x00A4, 80)
    sub_hospital = Field("sub_hospital", 0x00F4, 80)
    paid_type = Field("paid_type", 0x0144, 1)
    issue_date = Field("issue_date", 0x0145, 8)
    expiry_date = Field("expiry_date", 0x014D, 8)
    update_date = Field("update_date", 0x0155, 8)
    change_count = Field("change_count", 0x015D, 1)


NHSO_FIELDS = (NhsoLayout.main_inscl, NhsoLayout.sub_inscl, NhsoLayout.main_hospital,
               NhsoLayout.sub_hospital, NhsoLayout.paid_type, NhsoLayout.issue_date,
               NhsoLayout.expiry_date, NhsoLayout.update_date, NhsoLayout.change_count)
NHSO_BLOCK = Field("nhso_block", 0x0004, NhsoLayout.change_count.end - 0x0004)
NHSO_FILE_SIZE = NhsoLayout.change_count.end
