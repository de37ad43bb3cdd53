"""The card's JSON, byte for byte, for recorded cards: /v1 (``CardRead.to_json``) and compat.

``card_golden.json`` holds card images (demo cards, hypothesis-drawn profiles, random bytes)
and what the agent answered for them when they were recorded, and the OpenAPI ``Card``
schema that describes those answers. A change to the field table,
the decoders, the encoder or the JSON views that alters any answer fails here, key order
included (pages and tests compare the JSON text). Re-record only for an intended change:
``.venv/bin/python -m tests.test_card_golden --answers`` keeps the recorded card images and
writes what the agent answers for them now (and the schema); ``--write`` draws new cards.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from agent.api.compat import card_fields
from agent.api.responses import dumps
from agent.card import layout as L
from agent.card.encode import encode_card, encode_nhso
from agent.card.session import CardRead, read_card
from agent.card.simulator import ATR_3B67, ATR_3B79, SimulatedCard
from agent.card.values import CardDate, CardProfile, NhsoCoverage

GOLDEN = Path(__file__).with_name("data") / "card_golden.json"
# A fixed local wall time: the compat timestamps and age depend on "now".
NOW = dt.datetime(2026, 3, 4, 5, 6, 7).astimezone()
FIXED_UUID = "00000000-0000-0000-0000-000000000000"


def _pack(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 9)).decode()


def _unpack(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text))


def _read(case: dict[str, Any], *, text_first: bool) -> CardRead:
    atr = bytes.fromhex(case["atr"])
    nhso = _unpack(case["nhso"]) if case.get("nhso") else None
    laser = bytes.fromhex(case["laser"]) if case.get("laser") else None
    card = SimulatedCard(_unpack(case["moi"]), atr=atr, nhso_image=nhso, laser_answer=laser)
    return read_card(card.process, atr, on_text=(lambda r: None) if text_first else None,
                     nhso=nhso is not None, laser=laser is not None)


def _v1(card: CardRead) -> str:
    out = card.to_json(photo_b64=True)
    for key in ("text_ms", "photo_ms", "total_ms"):     # timings vary; counts do not
        out["read"][key] = 0
    return dumps(out)


def _compat(card: CardRead, *, image: bool) -> str:
    out = card_fields(card, image=image, now=NOW)
    out["correlationId"] = FIXED_UUID
    return dumps(out)


def answers(case: dict[str, Any]) -> dict[str, str]:
    full, text_first = _read(case, text_first=False), _read(case, text_first=True)
    # The text-first read differs from the full read only in its counts.
    return {"v1": _v1(full), "v1_text_first_read": dumps(json.loads(_v1(text_first))["read"]),
            "compat": _compat(full, image=False), "compat_image": _compat(full, image=True)}


def _cases() -> list[dict[str, Any]]:
    if not GOLDEN.exists():         # only while recording it for the first time
        return []
    return json.loads(GOLDEN.read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["id"])
def test_json_answers_are_unchanged(case):
    got = answers(case)
    for key, want in case["answers"].items():
        assert got[key] == want, key


@pytest.mark.parametrize("case", [c for c in _cases() if c["round_trip"]],
                         ids=lambda c: c["id"])
def test_encoder_writes_the_recorded_image(case):
    read = _read(case, text_first=False)
    assert encode_card(CardProfile(read.text, read.photo or b"")) == _unpack(case["moi"])
    if case.get("nhso"):
        assert read.nhso is not None and encode_nhso(read.nhso) == _unpack(case["nhso"])


def test_openapi_card_schema_is_unchanged():
    from agent.api.openapi import SCHEMAS

    recorded = json.loads(GOLDEN.read_text(encoding="utf-8"))["openapi_card"]
    assert dumps(SCHEMAS["Card"]) == recorded


# -- recording ----------------------------------------------------------------------------
def _profiles() -> list[tuple[str, CardProfile]]:
    """Demo cards and hypothesis-drawn ones (drawn once; the images are what is kept)."""
    from dataclasses import replace

    from hypothesis import HealthCheck, given, seed, settings

    from agent.card.demo import demo_profile
    from tests.card_strategies import card_profile

    out = [(f"demo{v}", demo_profile(v)) for v in range(3)]
    demo = demo_profile(0)
    out.append(("demo_partial_dates", CardProfile(replace(
        demo.text, birth_date=CardDate("25100000"), expiry_date=CardDate("99999999"),
        request_number="ABC", photo_length=0x7831), demo.photo)))
    drawn: list[CardProfile] = []

    @seed(11)
    @settings(max_examples=12, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(card_profile())
    def draw(profile: CardProfile) -> None:
        drawn.append(profile)

    draw()
    # Keep a few, with short photos so the file stays small.
    for i, p in enumerate(drawn[-6:]):
        out.append((f"drawn{i}", CardProfile(p.text, b"\xff\xd8" + p.photo[2:40] + b"\xff\xd9")))
    return out


def _random_image(rng: random.Random, photo: bytes) -> bytes:
    """Any bytes where the text fields are: what a broken or unknown card could hold."""
    text = bytes(rng.getrandbits(8) for _ in range(L.PHOTO.offset))
    tail = bytes(rng.getrandbits(8) for _ in range(L.FILE_SIZE - L.PHOTO.end))
    return text + photo.ljust(L.PHOTO.length, b"\x00") + tail


def record() -> dict[str, Any]:
    cases: list[dict[str, Any]] = []
    nhso = NhsoCoverage("UCS", "89", "10699", "10699", "1", CardDate("25660101"),
                        CardDate("99999999"), CardDate("2566"), "0")
    for i, (name, profile) in enumerate(_profiles()):
        case: dict[str, Any] = {"id": name, "round_trip": True,
                                "atr": (ATR_3B67 if i % 2 else ATR_3B79).hex(),
                                "moi": _pack(encode_card(profile))}
        if i % 3 == 1:
            case["nhso"] = _pack(encode_nhso(nhso))
            case["laser"] = (bytes(7) + b"JT1234567890ABCD").hex()
        cases.append(case)
    rng = random.Random(4711)
    photo = b"\xff\xd8" + b"\x00\x20" * 40 + b"\xff\xd9"
    for i in range(4):
        cases.append({"id": f"random{i}", "round_trip": False, "atr": ATR_3B79.hex(),
                      "moi": _pack(_random_image(rng, photo if i % 2 == 0 else b"junk"))})
    rng_nhso = bytes(rng.getrandbits(8) for _ in range(L.NHSO_FILE_SIZE))
    cases[-1]["nhso"] = _pack(rng_nhso)
    for case in cases:
        case["answers"] = answers(case)
    from agent.api.openapi import SCHEMAS

    return {"note": "recorded by tests/test_card_golden.py --write",
            "openapi_card": dumps(SCHEMAS["Card"]), "cases": cases}


def re_answer() -> dict[str, Any]:
    """The recorded cards (same bytes) with today's answers: for an intended change of output."""
    from agent.api.openapi import SCHEMAS

    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    for case in golden["cases"]:
        case["answers"] = answers(case)
    golden["openapi_card"] = dumps(SCHEMAS["Card"])
    return golden


if __name__ == "__main__":
    if sys.argv[1:] not in (["--write"], ["--answers"]):
        sys.exit("usage: python -m tests.test_card_golden --write | --answers")
    GOLDEN.parent.mkdir(exist_ok=True)
    data = record() if sys.argv[1:] == ["--write"] else re_answer()
    GOLDEN.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
