"""Synthetic, clearly fake cards for demo mode and tests."""

from __future__ import annotations

import io
from dataclasses import replace
from functools import lru_cache

from .values import Address, CardDate, CardProfile, CardText, Gender, Name, citizen_id_check_digit

PHOTO_SIZE = (148, 178)   # what real cards hold


def make_citizen_id(first12: str) -> str:
    return first12 + str(citizen_id_check_digit(first12))


@lru_cache(maxsize=8)
def demo_photo(label: str = "DEMO", shade: int = 0) -> bytes:
    """A small JPEG portrait placeholder that says it is a demo (fits the 5118-byte field)."""
    from PIL import Image, ImageDraw

    width, height = PHOTO_SIZE
    bg = (200 - shade % 60, 215, 235)
    img = Image.new("RGB", PHOTO_SIZE, bg)
    draw = ImageDraw.Draw(img)
    draw.ellipse((44, 28, 104, 96), fill=(120, 130, 150))          # head
    draw.rounded_rectangle((24, 100, 124, 178), radius=30, fill=(120, 130, 150))  # shoulders
    draw.rectangle((0, height - 34, width, height - 12), fill=(200, 30, 30))
    draw.text((width // 2 - 3 * len(label), height - 29), label, fill=(255, 255, 255))
    for quality in (60, 45, 30, 20):
        out = io.BytesIO()
        img.save(out, "JPEG", quality=quality, optimize=True)
        if out.tell() <= 5000:
            return out.getvalue()
    raise RuntimeError("demo photo does not fit on a card")


def demo_profile(variant: int = 0) -> CardProfile:
    """A fake person: the name says ทดสอบ/DEMO, the id has a valid check digit."""
    people = [
        (Name("นาย", "ทดสอบ", "", "ระบบอ่านบัตร"), Name("Mr.", "Demo", "", "Cardreader"), "1"),
        (Name("นางสาว", "ตัวอย่าง", "", "ใจดี"), Name("Miss", "Sample", "", "Jaidee"), "2"),
    ]
    th, en, gender = people[variant % len(people)]
    text = CardText(
        citizen_id=make_citizen_id(f"{1999900000000 + variant * 101:013d}"[:12]),
        name_th=th,
        name_en=en,
        birth_date=CardDate("25300115" if variant % 2 == 0 else "25420000"),
        gender=Gender(gender),
        issuer="ท้องถิ่นอำเภอทดสอบ/จังหวัดตัวอย่าง (ข้อมูลสาธิต)",
        issue_date=CardDate("25660401"),
        expiry_date=CardDate("25750114" if variant % 2 == 0 else "99999999"),
        address=Address(("99/9", "หมู่ที่ 9", "", "ซอยสาธิต", "ถนนทดสอบ", "ตำบลตัวอย่าง",
                         "อำเภอสาธิต", "จังหวัดนนทบุรี")),
        number_under_photo="1234" "56" f"{78901234 + variant:08d}",
        issuer_code="1234567890123",
        version="0003",
        request_number=f"{12345678901 + variant:011d}/{variant + 1:08d}",
        card_type="01",
    )
    photo = demo_photo("DEMO", variant * 17)
    # Real cards state their photo's length at 0x0179; the demo card does too.
    return CardProfile(text=replace(text, photo_length=len(photo)), photo=photo)
