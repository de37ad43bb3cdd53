"""The NHSO-compatible endpoints, shape for shape, over the demo reader."""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid

import pytest

from agent.api import compat
from agent.card.demo import demo_profile
from agent.card.values import CardDate, CardText, Name
from agent.errors import NhsoUnavailable
from agent.readers.demo import DEMO_READER
from tests.api_support import SECOND, start_agent

LOCAL_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")


def _text(**names: Name) -> CardText:
    return demo_profile(0).text.__class__(**{**demo_profile(0).text.__dict__, **names})


async def test_terminals(aiohttp_client):
    agent = await start_agent(aiohttp_client, readers=(DEMO_READER, SECOND))
    assert await agent.get_json("/api/smartcard/terminals") == [
        {"terminalName": DEMO_READER, "isPresent": True},
        {"terminalName": SECOND, "isPresent": False},
    ]


async def test_terminals_empty_without_readers(aiohttp_client):
    agent = await start_agent(aiohttp_client, readers=())
    assert await agent.get_json("/api/smartcard/terminals") == []


async def test_read_shape(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    resp = await agent.client.get("/api/smartcard/read?readImageFlag=false")
    assert resp.status == 200
    assert resp.headers["X-Coverage"] == "unavailable"
    body = await resp.json()
    text = demo_profile(0).text
    assert body["pid"] == text.citizen_id
    assert body["titleName"] == "003" and body["titleNameText"] == "นาย"
    assert (body["fname"], body["lname"]) == ("ทดสอบ", "ระบบอ่านบัตร")
    assert body["nation"] == "099"
    assert body["birthDate"] == "25300115"
    assert body["sex"] == "ชาย"
    assert re.fullmatch(r"\d+ ปี \d+ เดือน \d+ วัน", body["age"])
    assert LOCAL_STAMP.match(body["transDate"]) and LOCAL_STAMP.match(body["checkDate"])
    uuid.UUID(body["correlationId"])
    assert "image" not in body
    # No NHSO service: every coverage key callers index is there, null (claimTypes an
    # empty list), and coverageStatus says why; nothing invented.
    assert body["coverageStatus"] == "nhso_off"
    for key in ("mainInscl", "subInscl", "hospMain", "hospSub", "hospMainOp", "paidModel",
                "startDateTime", "expireDateTime"):
        assert body[key] is None
    assert body["claimTypes"] == []


async def test_read_image_and_new_correlation_id_each_time(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    first = await agent.get_json("/api/smartcard/read?readImageFlag=true")
    second = await agent.get_json("/api/smartcard/read-card-only?readImageFlag=TRUE")
    assert base64.b64decode(first["image"]) == demo_profile(0).photo
    assert first["image"] == second["image"]
    assert not first["image"].startswith("data:")
    assert first["correlationId"] != second["correlationId"]
    assert "coverageStatus" not in second


async def test_second_profile_titles_and_partial_birth_date(aiohttp_client):
    agent = await start_agent(aiohttp_client, insert=False)
    await agent.insert(1)
    body = await agent.get_json("/api/smartcard/read-card-only")
    assert body["titleName"] == "004" and body["sex"] == "หญิง"
    assert body["birthDate"] == "25420000"
    assert re.fullmatch(r"\d+ ปี", body["age"])        # only the year is known


async def test_terminal_parameter(aiohttp_client):
    agent = await start_agent(aiohttp_client, readers=(DEMO_READER, SECOND))
    body = await agent.get_json("/api/smartcard/read-card-only?terminal=" + DEMO_READER)
    assert body["pid"] == demo_profile(0).text.citizen_id
    empty = await agent.get_json(f"/api/smartcard/read-card-only?terminal={SECOND}", 500)
    assert empty["code"] == "no_card"
    unknown = await agent.get_json("/api/smartcard/read?terminal=Nope", 404)
    assert unknown["code"] == "reader_not_found"


async def test_default_terminal_is_preferred(aiohttp_client):
    agent = await start_agent(aiohttp_client, readers=(DEMO_READER, SECOND),
                              default_terminal=SECOND)
    body = await agent.get_json("/api/smartcard/read", 500)
    assert body["code"] == "no_card"       # the configured one has no card: no silent switch
    pref = await agent.get_json("/api/preference")
    assert pref["defaultTerminal"] == SECOND


async def test_no_reader_is_418_spring_style_thai(aiohttp_client):
    agent = await start_agent(aiohttp_client, readers=())
    for path in ("/api/smartcard/read", "/api/smartcard/read-card-only?readImageFlag=true"):
        resp = await agent.client.get(path)
        assert resp.status == 418
        body = await resp.json()
        assert set(body) >= {"timestamp", "status", "error", "message", "path"}
        assert body["status"] == 418 and body["path"] == path.split("?")[0]
        assert body["code"] == "no_reader"
        assert re.search("[\u0e00-\u0e7f]", body["message"])        # Thai for staff
        assert body["message_en"]


async def test_no_card_is_500(aiohttp_client):
    agent = await start_agent(aiohttp_client, insert=False)
    body = await agent.get_json("/api/smartcard/read", 500)
    assert body["code"] == "no_card" and body["error"] == "Internal Server Error"
    assert "ไม่พบบัตร" in body["message"]


class FakeCoverage:
    """Stands in for the NHSO room behind ``CoverageLookup`` (its own tests cover NHSO)."""

    def __init__(self, token: str | None, answer=None) -> None:
        self.token = token
        self.answer = answer
        self.asked: list[str] = []

    async def token_configured(self) -> bool:
        return bool(self.token)

    async def coverage_for(self, pid: str):
        self.asked.append(pid)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


COVERAGE_ANSWER = {
    "mainInscl": "(UCS) สิทธิหลักประกันสุขภาพแห่งชาติ", "subInscl": "(89) ช่วงอายุ 12-59 ปี",
    "hospMain": {"hcode": "10699", "hname": "โรงพยาบาลทดสอบ"}, "paidModel": "1",
    "claimTypes": [{"claimType": "PG0060001", "claimTypeName": "เข้ารับบริการรักษาทั่วไป"}],
}


async def test_coverage_merged_when_token_configured(aiohttp_client):
    fake = FakeCoverage("secret-token-value-123", COVERAGE_ANSWER)
    agent = await start_agent(aiohttp_client, coverage=fake)
    resp = await agent.client.get("/api/smartcard/read")
    body = await resp.json()
    assert resp.headers["X-Coverage"] == "ok" and body["coverageStatus"] == "ok"
    assert body["mainInscl"].startswith("(UCS)")
    assert body["claimTypes"][0]["claimType"] == "PG0060001"
    assert body["pid"] == demo_profile(0).text.citizen_id         # card fields win
    assert fake.asked == [body["pid"]]
    # read-card-only never asks NHSO.
    await agent.get_json("/api/smartcard/read-card-only")
    assert len(fake.asked) == 1


async def test_coverage_without_token_is_not_asked(aiohttp_client):
    fake = FakeCoverage(None, COVERAGE_ANSWER)
    agent = await start_agent(aiohttp_client, coverage=fake)
    resp = await agent.client.get("/api/smartcard/read")
    body = await resp.json()
    assert resp.headers["X-Coverage"] == "unavailable"
    assert body["coverageStatus"] == "no_token" and body["mainInscl"] is None
    assert body["claimTypes"] == []
    assert fake.asked == []


async def test_failed_lookup_with_token_is_500_like_the_nhso_agent(aiohttp_client):
    agent = await start_agent(aiohttp_client, coverage=FakeCoverage(
        "secret-token-value-123", NhsoUnavailable("timeout")))
    body = await agent.get_json("/api/smartcard/read", 500)
    assert body["code"] == "nhso_unavailable"


async def test_preference_without_token(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    assert await agent.get_json("/api/preference") == {
        "defaultTerminal": DEMO_READER, "token": "", "tokenConfigured": False}


async def test_preference_masks_token(aiohttp_client):
    secret = "very-secret-nhso-token-0123456789"
    agent = await start_agent(aiohttp_client, coverage=FakeCoverage(secret))
    for path in ("/api/preference", "/api/api/preference"):
        resp = await agent.client.get(path)
        raw = await resp.text()
        assert secret not in raw and secret[-4:] not in raw
        body = await resp.json()
        assert body["token"] == "********" and body["tokenConfigured"] is True


# -- the NHSO shapes, unit by unit --------------------------------------------------------
@pytest.mark.parametrize("prefix,code", [
    ("นาย", "003"), ("นาง", "005"), ("นางสาว", "004"), ("น.ส.", "004"), ("ด.ช.", "001"),
    ("เด็กหญิง", "002"), ("ร.ต.อ.", "ร.ต.อ."),
])
def test_title_codes(prefix, code):
    assert compat.title_code(_text(name_th=Name(prefix, "ก", "", "ข"))) == code


def test_title_from_english_when_thai_prefix_missing():
    text = _text(name_th=Name("", "ก", "", "ข"), name_en=Name("Mrs.", "A", "", "B"))
    assert compat.title_code(text) == "005"


@pytest.mark.parametrize("birth,today,age", [
    ("25300115", dt.date(2025, 11, 7), "38 ปี 9 เดือน 23 วัน"),
    ("25300115", dt.date(2025, 1, 15), "38 ปี 0 เดือน 0 วัน"),
    ("25681107", dt.date(2025, 11, 7), "0 ปี 0 เดือน 0 วัน"),
    ("25300100", dt.date(2025, 11, 7), "38 ปี 10 เดือน"),
    ("25300000", dt.date(2025, 11, 7), "38 ปี"),
    ("99999999", dt.date(2025, 11, 7), ""),
])
def test_thai_age(birth, today, age):
    assert compat.thai_age(CardDate(birth), today) == age


@pytest.mark.parametrize("cid,nation", [("1999900000005", "099"), ("3100100000000", "099"),
                                        ("6100100000000", ""), ("0000000000000", "")])
def test_nation(cid, nation):
    assert compat.nation_code(cid) == nation


def test_local_timestamp_has_no_zone():
    moment = dt.datetime(2025, 11, 7, 10, 26, 31, 999, tzinfo=dt.UTC)
    assert LOCAL_STAMP.match(compat.local_timestamp(moment))
