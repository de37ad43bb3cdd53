"""Thai ID card file images written by hand from the documented layout.

Every offset and length below is copied from docs/reference.md ("The applet's file",
"Decoding", "Readers and other programs in the field"), never computed from the
agent's layout table or produced by its encoder: a test that reads these images with the
agent's decoder checks the agent against the documents, not against itself. This module
imports nothing from ``agent``.

Two cards:
- ``EDGE``: the values the documents warn about: a birth date with month and day ``00``, a
  lifelong expiry ``99999999``, a middle name, a Bangkok address longer than the 100 bytes
  most readers read with a byte only cp874 maps (0xA0), an issuer code of 9 digits and 4
  spaces, a photo with ``FF D9`` and 0x20 bytes inside it.
- ``PLAIN``: an ordinary card with full dates and a short address, which the peer library
  pythaiidcard can read completely (its model refuses partial dates and lifelong expiry).
"""

from __future__ import annotations

# -- helpers: only byte placement, no knowledge of the layout ---------------------------------


def tis620(text: str) -> bytes:
    """Thai text as the card holds it: TIS-620 (docs/reference.md "Decoding"; the stdlib codec)."""
    return text.encode("tis-620")


def place(image: bytearray, offset: int, length: int, data: bytes, *, pad: bytes = b" ") -> None:
    """Write ``data`` at ``offset`` padded to ``length`` (docs/reference.md: text is padded
    with 0x20)."""
    assert len(data) <= length, (hex(offset), len(data), length)
    image[offset:offset + length] = data.ljust(length, pad)


def photo_length_bytes(jpeg: bytes) -> bytes:
    """the field (docs/reference.md): the 2 bytes at 0x0179 hold the JPEG's length, big-endian."""
    return bytes([len(jpeg) >> 8, len(jpeg) & 0xFF])


# -- the photo ------------------------------------------------------------------------------
# An 8x8 grey baseline JFIF (a dark diagonal on grey), made once with an image library and
# pasted here as bytes; any JPEG would do. A comment segment (FF FE, length 0x000C) was put
# after the JFIF header holding "TEST", two spaces, FF D9 and two spaces: docs/reference.md
# says to cut the photo at the *last* FF D9, and the field (docs/reference.md) that 0x20 bytes
# inside the
# JPEG are data.
JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000"          # SOI, APP0 JFIF
    "fffe000c" "54455354" "2020" "ffd9" "2020"           # COM: "TEST  " FF D9 "  "
    "ffdb0043001b12141714111b1716171e1c1b2028422b28252528513a3d3042605565645f555d5b6a78"
    "99816a7190735b5d85b586909ea3abadab6780bcc9baa6c799a8aba4"
    "ffc0000b080008000801011100"
    "ffc40014000100000000000000000000000000000003"
    "ffc4001a100000070000000000000000000000000031337173b1b2e1"
    "ffda0008010100003f00329bae4207"
    "ffd9")                                               # EOI
JPEG_SHA256 = "465867fd54ea32dc580a4ef0dcb8df221a4b99e0fbe8c67cb7963e6306b934d3"
assert len(JPEG) == 183

# The file ends with the number under the photo at 0x1619/14, so it is 0x1627 bytes long.
FILE_SIZE = 0x1627


def _photo_field(jpeg: bytes) -> bytes:
    # the field (docs/reference.md): "a JFIF JPEG, then 0x20 fill after FF D9"; the field is 5118
    # bytes.
    return jpeg.ljust(5118, b" ")


# -- card EDGE --------------------------------------------------------------------------------
# Thai name "นาง#สมศรี#มารี#ทองดี" written byte by byte: TIS-620 puts U+0E01..U+0E5B at
# 0xA1..0xFB, '#' is ASCII 0x23.
EDGE_NAME_TH = bytes([
    0xB9, 0xD2, 0xA7,                    # นาง   (prefix: Mrs.)
    0x23,
    0xCA, 0xC1, 0xC8, 0xC3, 0xD5,        # สมศรี (first)
    0x23,
    0xC1, 0xD2, 0xC3, 0xD5,              # มารี  (middle)
    0x23,
    0xB7, 0xCD, 0xA7, 0xB4, 0xD5,        # ทองดี (last)
])
EDGE_ADDRESS = ("1234/56 อาคารสาธิตทดสอบ ชั้น 12#หมู่ที่ 3#ตรอกวัดดอน#ซอยเจริญกรุง 47"
                "#ถนนเจริญกรุง#แขวงสี่พระยา#เขตบางรัก#กรุงเทพมหานคร")
# The space after "ชั้น" is byte 0xA0 on this card: TIS-620 leaves 0xA0 undefined, cp874 (which
# docs/reference.md says to decode with, "a superset that maps 0xA0") reads it as U+00A0.
EDGE_ADDRESS_BYTES = tis620(EDGE_ADDRESS).replace(tis620("ชั้น "), tis620("ชั้น") + b"\xa0")


def _edge() -> bytes:
    image = bytearray(b" " * FILE_SIZE)
    place(image, 0x0000, 4, b"0003")                        # data format version
    place(image, 0x0004, 13, b"3100600512341")              # citizen id, check digit 1
    place(image, 0x0011, 100, EDGE_NAME_TH)                 # name, Thai (TIS-620)
    place(image, 0x0075, 100, b"Mrs.#Somsri#Maree#Thongdee")  # name, English
    place(image, 0x00D9, 8, b"25230000")                    # birth: only the year (BE 2523)
    place(image, 0x00E1, 1, b"2")                           # gender: 2 = female
    place(image, 0x00E2, 20, b"10040123456/12345678")       # request number NNNNNNNNNNN/NNNNNNNN
    place(image, 0x00F6, 100, tis620("ท้องถิ่นเขตบางรัก/กรุงเทพมหานคร"))  # issuer "office/province"
    place(image, 0x015A, 13, b"100400000    ")              # issuer code: 9 digits + 4 spaces
    place(image, 0x0167, 8, b"25600812")                    # issue date, BE
    place(image, 0x016F, 8, b"99999999")                    # expiry: lifelong
    place(image, 0x0177, 2, b"01")                          # card type
    place(image, 0x0179, 2, photo_length_bytes(JPEG))       # photo length, big-endian
    place(image, 0x017B, 5118, _photo_field(JPEG))          # photo
    place(image, 0x1579, 160, EDGE_ADDRESS_BYTES)           # address, 8 '#' parts, > 100 bytes
    place(image, 0x1619, 14, b"10040812345678")             # number printed under the photo
    return bytes(image)


# -- card PLAIN -------------------------------------------------------------------------------
PLAIN_ADDRESS = "99/9#หมู่ที่ 4###ถนนติวานนท์#ตำบลบางกระสอ#อำเภอเมืองนนทบุรี#จังหวัดนนทบุรี"


def _plain() -> bytes:
    image = bytearray(b" " * FILE_SIZE)
    place(image, 0x0000, 4, b"0002")
    place(image, 0x0004, 13, b"1101700203450")              # check digit 0
    place(image, 0x0011, 100, tis620("นาย#สมชาย##ใจดี"))     # empty middle name: '##'
    place(image, 0x0075, 100, b"Mr.#Somchai##Jaidee")
    place(image, 0x00D9, 8, b"25300115")                    # 15 January 2530 BE = 1987
    place(image, 0x00E1, 1, b"1")                           # male
    place(image, 0x00E2, 20, b"12990456789/87654321")
    place(image, 0x00F6, 100, tis620("อำเภอเมืองนนทบุรี/นนทบุรี"))
    place(image, 0x015A, 13, b"1299000001234")
    place(image, 0x0167, 8, b"25650301")                    # 1 March 2565 BE = 2022
    place(image, 0x016F, 8, b"25740114")                    # 14 January 2574 BE = 2031
    place(image, 0x0177, 2, b"01")
    place(image, 0x0179, 2, photo_length_bytes(JPEG))
    place(image, 0x017B, 5118, _photo_field(JPEG))
    place(image, 0x1579, 160, tis620(PLAIN_ADDRESS))
    place(image, 0x1619, 14, b"12990301234567")
    return bytes(image)


EDGE = _edge()
PLAIN = _plain()

# -- ATRs (docs/reference.md "Card generations", the field (docs/reference.md))
# --------------------------------
ATR_TH_NID_11 = bytes.fromhex("3B 79 96 00 00 54 48 20 4E 49 44 20 31 31")   # "TH NID 11"
ATR_NO_TH_NID = bytes.fromhex("3B 68 00 00 00 73 C8 40 00 00 90 00")         # a real card

# -- the NHSO coverage applet (docs/reference.md "Other applets") -------------------------------
# Fields (offset/length): main coverage 0004/60, sub coverage 0040/100, main hospital 00A4/80,
# sub hospital 00F4/80, paid type 0144/1, issue 0145/8, expiry 014D/8, update 0155/8,
# hospital changes 015D/1. The file is 0x015E bytes; 0000..0003 is not described.
NHSO_FILE_SIZE = 0x015E


def _nhso() -> bytes:
    image = bytearray(b" " * NHSO_FILE_SIZE)
    place(image, 0x0004, 60, tis620("(UCS) สิทธิหลักประกันสุขภาพแห่งชาติ"))
    place(image, 0x0040, 100, tis620("(89) ช่วงอายุ 12-59 ปี"))
    place(image, 0x00A4, 80, tis620("โรงพยาบาลนนทเวช"))
    place(image, 0x00F4, 80, tis620("รพ.สต.บางกระสอ"))
    place(image, 0x0144, 1, b"1")
    place(image, 0x0145, 8, b"25650401")
    place(image, 0x014D, 8, b"25680331")
    place(image, 0x0155, 8, b"25660910")
    place(image, 0x015D, 1, b"2")
    return bytes(image)


NHSO = _nhso()

# -- the laser id (docs/reference.md "Other applets", the field (docs/reference.md))
# ----------------------------
# "send 80 00 00 00, get 61 17, GET RESPONSE 23 bytes, laser number = bytes 7..22", padded
# with 0x00 (the field (docs/reference.md): the laser id is padded with 0x00; 12 characters + 4
# NULs).
LASER_ID = "ME0123456789"
LASER_ANSWER = bytes.fromhex("01 02 03 04 05 06 07") + LASER_ID.encode("ascii") + b"\x00" * 4
assert len(LASER_ANSWER) == 23
