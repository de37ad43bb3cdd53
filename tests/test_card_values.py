"""Decoder rules for single values: dates, names, gender, address, citizen id."""

from __future__ import annotations

import pytest

from agent.card.decode import decode_address, decode_name, decode_text
from agent.card.values import (
    Address,
    CardDate,
    Gender,
    Name,
    citizen_id_check_digit,
    citizen_id_valid,
    format_photo_number,
    mask_citizen_id,
    request_number_well_formed,
)


@pytest.mark.parametrize("raw, precision, iso, year, month, day", [
    ("25300115", "day", "1987-01-15", 1987, 1, 15),
    ("25300100", "month", "1987-01", 1987, 1, None),
    ("25300000", "year", "1987", 1987, None, None),
    ("99999999", "lifelong", None, None, None, None),
    ("", "none", None, None, None, None),
    ("00000000", "none", None, None, None, None),
    ("25301301", "invalid", None, None, None, None),     # month 13
    ("25300230", "invalid", None, None, None, None),     # 30 February
    ("25300015", "invalid", None, None, None, None),     # a day without a month
    ("2530011", "invalid", None, None, None, None),      # too short
    ("2530O115", "invalid", None, None, None, None),     # letter O
])
def test_card_date_precision(raw, precision, iso, year, month, day):
    d = CardDate(raw)
    assert (d.precision, d.iso, d.year, d.month, d.day) == (precision, iso, year, month, day)
    assert d.to_json()["raw"] == raw
    assert d.lifelong is (raw == "99999999")


def test_card_date_leap_day_in_buddhist_era():
    # 2543 BE = 2000, a leap year; 2544 BE = 2001 is not.
    assert CardDate("25430229").iso == "2000-02-29"
    assert CardDate("25440229").precision == "invalid"
    assert CardDate("25300115").as_date().isoformat() == "1987-01-15"
    assert CardDate("25300100").as_date() is None


def test_gender():
    assert (Gender("1").en, Gender("1").th) == ("male", "ชาย")
    assert (Gender("2").en, Gender("2").th) == ("female", "หญิง")
    assert Gender("9").en == "unknown" and Gender("9").to_json()["raw"] == "9"


def test_name_split_on_hash_before_cleaning():
    raw = "นาย#สมชาย##ใจดี".encode("cp874").ljust(100, b" ")
    assert decode_name(raw) == Name("นาย", "สมชาย", "", "ใจดี")
    assert decode_name(raw).full(thai=True) == "นายสมชาย ใจดี"
    en = decode_name(b"Mr.#Somchai#Kumar#Jaidee".ljust(100, b" "))
    assert en == Name("Mr.", "Somchai", "Kumar", "Jaidee")
    assert en.full(thai=False) == "Mr. Somchai Kumar Jaidee"


def test_name_edge_shapes():
    assert decode_name(b" " * 100) == Name()
    assert decode_name(b"\x00" * 100) == Name()
    assert decode_name("นาย#สมชาย".encode("cp874")) == Name("นาย", "สมชาย", "", "")
    # spaces around parts are padding, not content; extra parts fold into the last name
    assert decode_name(b"Mr. # John # # Doe#Jr ") == Name("Mr.", "John", "", "Doe Jr")


def test_text_is_cp874_with_replacement_and_stripped():
    assert decode_text("กรุงเทพ".encode("cp874") + b"  \x00\x00") == "กรุงเทพ"
    assert decode_text(b"\xa0A") == "\xa0A"                  # cp874 maps 0xA0 (TIS-620 does not)
    assert decode_text(b"A\xdbB") == "A\ufffdB"              # an unassigned byte never raises


def test_address_bangkok_and_province():
    bkk = decode_address("123/4####ถนนสุขุมวิท#แขวงคลองเตย#เขตคลองเตย#กรุงเทพมหานคร"
                         .encode("cp874").ljust(160, b" "))
    j = bkk.to_json()
    assert (j["house_no"], j["road"], j["subdistrict"], j["district"], j["province"]) == \
        ("123/4", "สุขุมวิท", "คลองเตย", "คลองเตย", "กรุงเทพมหานคร")
    prov = decode_address("9#หมู่ที่ 5#ตรอกวัด#ซอยสุข#ถนนหลวง#ตำบลบางพูด#อำเภอปากเกร็ด#จังหวัดนนทบุรี"
                          .encode("cp874"))
    j = prov.to_json()
    assert (j["moo"], j["trok"], j["soi"], j["road"]) == ("5", "วัด", "สุข", "หลวง")
    assert (j["subdistrict"], j["district"], j["province"]) == ("บางพูด", "ปากเกร็ด", "นนทบุรี")
    assert j["full"].startswith("9 หมู่ที่ 5")


def test_address_middle_parts_classified_by_prefix_not_position():
    # a card that puts the road before the soi still classifies both
    a = Address(("1", "ถนนพหลโยธิน", "ซอย 3", "", "", "ตำบลก", "อำเภอข", "จังหวัดค"))
    assert (a.to_json()["road"], a.to_json()["soi"]) == ("พหลโยธิน", "3")
    odd = Address(("1", "อาคารเอ ชั้น 2", "", "", "", "ตำบลก", "อำเภอข", "จังหวัดค"))
    assert odd.to_json()["other"] == "อาคารเอ ชั้น 2"


def test_address_of_full_160_bytes_is_kept_whole():
    parts = ["9" * 20, "หมู่ที่ 12", "ตรอก" + "ก" * 10, "ซอย" + "ข" * 20, "ถนน" + "ค" * 20,
             "ตำบล" + "ง" * 10, "อำเภอ" + "จ" * 10, "จังหวัด" + "ฉ" * 10]
    raw = "#".join(parts).encode("cp874")
    raw = raw + b"X" * (160 - len(raw))           # the last part fills the field to the byte
    a = decode_address(raw)
    assert len(a.raw.encode("cp874")) == 160
    assert a.province.endswith("X") and a.parts[0] == "9" * 20
    assert len(raw) == 160 and len(raw[:100]) < len(raw)   # what 100-byte readers would cut


def test_address_with_too_many_separators_loses_nothing():
    a = decode_address(b"1#2#3#4#5#6#7#8#9")
    assert len(a.parts) == 8 and a.parts[-1] == "8#9"


def test_citizen_id_check_digit():
    # by hand: 1*13+1*12+0*11+1*10+7*9+0*8+0*7+2*6+0*5+3*4+3*3+6*2 = 143; 143 % 11 = 0;
    # (11 - 0) % 10 = 1
    assert citizen_id_check_digit("110170020336") == 1
    # 1*13 + 1*12 = 25; 25 % 11 = 3; 11 - 3 = 8
    assert citizen_id_check_digit("110000000000") == 8
    # 1*13 + 9*12 = 121; 121 % 11 = 0 -> 11 -> 1 (the mod 10 matters)
    assert citizen_id_check_digit("190000000000") == 1
    # 1*13 + 8*12 = 109; 109 % 11 = 10 -> 1
    assert citizen_id_check_digit("180000000000") == 1
    # 3*13 = 39; 39 % 11 = 6 -> 5
    assert citizen_id_check_digit("300000000000") == 5
    assert citizen_id_valid("1101700203361")
    assert not citizen_id_valid("1101700203365")
    assert not citizen_id_valid("110170020336")
    assert not citizen_id_valid("١١٠١٧٠٠٢٠٣٣٦١")             # non-ASCII digits
    assert mask_citizen_id("1101700203361") == "1-1017-xxxxx-xx-1"


def test_number_under_photo_format():
    assert format_photo_number("12345678901234") == "1234-56-78901234"
    assert format_photo_number("123") == "123"


def test_request_number_shape():
    assert request_number_well_formed("10040123456/12345678")
    assert not request_number_well_formed("1004012345612345678 ")
    assert not request_number_well_formed("")
