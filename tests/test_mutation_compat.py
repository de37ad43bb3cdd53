"""The NHSO-compatible answers, through HTTP only (the module behind them is being
reshaped; these answers are the contract): flags as the NHSO agent's pages write them,
the middle name, coverage merging rules, and the token state when the NHSO part fails.

Added where mutation testing (scripts/mutation.sh) showed agent/api/compat.py could change
without a test noticing.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from typing import Any

import pytest

from agent.card.demo import demo_profile
from agent.card.encode import encode_card
from agent.card.simulator import SimulatedCard
from agent.card.values import CardDate, Name
from agent.errors import KeyringUnavailable
from agent.readers.demo import DEMO_READER
from tests.api_support import start_agent


class Coverage:
    """The NHSO service's coverage interface, as compat calls it."""

    def __init__(self, token: Any = True, answer: Any = None) -> None:
        self.token = token
        self.answer = answer
        self.asked: list[str] = []

    async def token_configured(self) -> bool:
        if isinstance(self.token, Exception):
            raise self.token
        return bool(self.token)

    async def coverage_for(self, pid: str) -> Any:
        self.asked.append(pid)
        return self.answer


def card_with(**text_changes: Any) -> SimulatedCard:
    profile = demo_profile(0)
    text = dataclasses.replace(profile.text, **text_changes)
    return SimulatedCard(encode_card(dataclasses.replace(profile, text=text)))


async def agent_with_card(aiohttp_client: Any, card: SimulatedCard, **kw: Any) -> Any:
    agent = await start_agent(aiohttp_client, insert=False, **kw)
    await agent._change(lambda: agent.backend.insert(DEMO_READER, card), "card.read",
                        DEMO_READER)
    return agent


async def test_an_image_flag_that_is_neither_yes_nor_no_is_a_400(aiohttp_client: Any) -> None:
    agent = await start_agent(aiohttp_client)
    body = await agent.get_json("/api/smartcard/read-card-only?readImageFlag=XX", 400)
    assert body["code"] == "bad_request" and "readImageFlag" in body["detail"]


@pytest.mark.parametrize("flag", ["true", "TRUE", "1", "yes", "Yes", "y", "Y", "on", "ON",
                                  " true "])
async def test_image_flag_spellings_that_mean_yes(aiohttp_client: Any, flag: str) -> None:
    agent = await start_agent(aiohttp_client)
    body = await agent.get_json(f"/api/smartcard/read-card-only?readImageFlag={flag}")
    assert base64.b64decode(body["image"]) == demo_profile(0).photo


@pytest.mark.parametrize("query", ["", "?readImageFlag=", "?readImageFlag=false",
                                   "?readImageFlag=0", "?readImageFlag=no",
                                   "?readimageflag=true"])
async def test_image_flag_anything_else_means_no(aiohttp_client: Any, query: str) -> None:
    agent = await start_agent(aiohttp_client)
    body = await agent.get_json(f"/api/smartcard/read-card-only{query}")
    assert "image" not in body


async def test_no_image_asked_means_the_photo_is_not_waited_for(aiohttp_client: Any) -> None:
    # A slow card: without the flag the answer comes once the text is read, before the
    # photo; with it, the photo is in the answer.
    agent = await start_agent(aiohttp_client, insert=False, apdu_delay=0.01)
    await agent._change(lambda: agent.backend.insert(DEMO_READER, card_with()),
                        "card.read", DEMO_READER)
    assert "image" not in await agent.get_json("/api/smartcard/read?readImageFlag=false")
    body = await agent.get_json("/api/smartcard/read?readImageFlag=true")
    assert base64.b64decode(body["image"]) == demo_profile(0).photo


async def test_middle_name_only_when_the_card_has_one(aiohttp_client: Any) -> None:
    card = card_with(name_th=Name("นาย", "ทดสอบ", "กลาง", "ระบบอ่านบัตร"))
    agent = await agent_with_card(aiohttp_client, card)
    body = await agent.get_json("/api/smartcard/read-card-only")
    assert (body["fname"], body["mname"], body["lname"]) == ("ทดสอบ", "กลาง", "ระบบอ่านบัตร")
    agent2 = await start_agent(aiohttp_client)
    assert "mname" not in await agent2.get_json("/api/smartcard/read-card-only")


@pytest.mark.parametrize(("th", "en", "code"), [
    (Name("", "ก", "", "ข"), Name("Mr.", "A", "", "B"), "003"),
    (Name("", "ก", "", "ข"), Name("MASTER", "A", "", "B"), "001"),
    (Name("", "ก", "", "ข"), Name("Dr.", "A", "", "B"), "Dr."),     # unknown: as written
    (Name("น. ส.", "ก", "", "ข"), Name("Miss", "A", "", "B"), "004"),  # spaces inside
    (Name("ร.ต.อ.", "ก", "", "ข"), Name("Pol.", "A", "", "B"), "ร.ต.อ."),
])
async def test_title_codes_over_http(aiohttp_client: Any, th: Name, en: Name,
                                     code: str) -> None:
    agent = await agent_with_card(aiohttp_client, card_with(name_th=th, name_en=en))
    body = await agent.get_json("/api/smartcard/read-card-only")
    assert body["titleName"] == code and body["titleNameText"] == th.prefix


async def test_age_of_a_birth_year_in_the_future_is_zero(aiohttp_client: Any) -> None:
    future = dt.date.today().year + 543 + 2
    agent = await agent_with_card(aiohttp_client,
                                  card_with(birth_date=CardDate(f"{future}0000")))
    assert (await agent.get_json("/api/smartcard/read-card-only"))["age"] == "0 ปี"


@pytest.mark.parametrize(("days_ahead", "age"), [(40, "0 ปี 0 เดือน 0 วัน")])
async def test_age_of_a_birthday_ahead_is_zero(aiohttp_client: Any, days_ahead: int,
                                               age: str) -> None:
    born = dt.date.today() + dt.timedelta(days=days_ahead)
    raw = f"{born.year + 543}{born.month:02d}{born.day:02d}"
    agent = await agent_with_card(aiohttp_client, card_with(birth_date=CardDate(raw)))
    assert (await agent.get_json("/api/smartcard/read-card-only"))["age"] == age


async def test_age_month_precision_ahead_is_zero_without_days(aiohttp_client: Any) -> None:
    born = dt.date.today().replace(day=1) + dt.timedelta(days=70)
    raw = f"{born.year + 543}{born.month:02d}00"
    agent = await agent_with_card(aiohttp_client, card_with(birth_date=CardDate(raw)))
    assert (await agent.get_json("/api/smartcard/read-card-only"))["age"] == "0 ปี 0 เดือน"


@pytest.mark.parametrize(("birth", "today", "age"), [
    # The birthday was on the 28th of last month: days are counted from it.
    ("25300128", dt.date(2025, 3, 5), "38 ปี 1 เดือน 5 วัน"),
    ("25300131", dt.date(2025, 3, 5), "38 ปี 1 เดือน 5 วัน"),     # Feb has no 31st
    ("25300105", dt.date(2025, 3, 5), "38 ปี 2 เดือน 0 วัน"),
    ("25300106", dt.date(2025, 3, 5), "38 ปี 1 เดือน 27 วัน"),
    ("25690105", dt.date(2025, 3, 5), "0 ปี 0 เดือน 0 วัน"),      # born later: zero
    ("25690100", dt.date(2025, 3, 5), "0 ปี 0 เดือน"),
    ("25690000", dt.date(2025, 3, 5), "0 ปี"),
    ("25680000", dt.date(2025, 3, 5), "0 ปี"),
    ("25670000", dt.date(2025, 3, 5), "1 ปี"),
])
def test_thai_age_precision_and_borrowing(birth: str, today: dt.date, age: str) -> None:
    from agent.api import compat
    assert compat.thai_age(CardDate(birth), today) == age


# -- coverage ---------------------------------------------------------------------------------

async def test_coverage_fills_only_what_the_card_does_not_say(aiohttp_client: Any) -> None:
    answer = {"mainInscl": "(UCS) x", "pid": "0000000000000", "fname": "NHSO's",
              "checkDate": "2026-03-10T09:00:00", "paidModel": "1"}
    fake = Coverage(True, answer)
    agent = await start_agent(aiohttp_client, coverage=fake)
    resp = await agent.client.get("/api/smartcard/read")
    body = await resp.json()
    assert resp.headers["X-Coverage"] == "ok" and body["coverageStatus"] == "ok"
    assert body["pid"] == demo_profile(0).text.citizen_id and body["fname"] == "ทดสอบ"
    # Only the coverage keys come from NHSO: the card's fields and our stamps stay ours.
    assert body["checkDate"] == body["transDate"] != "2026-03-10T09:00:00"
    assert (body["mainInscl"], body["paidModel"]) == ("(UCS) x", "1")


@pytest.mark.parametrize("answer", [None, [], "text"])
async def test_a_lookup_without_an_answer_is_unavailable(aiohttp_client: Any,
                                                         answer: Any) -> None:
    fake = Coverage(True, answer)
    agent = await start_agent(aiohttp_client, coverage=fake)
    resp = await agent.client.get("/api/smartcard/read")
    body = await resp.json()
    assert resp.status == 200 and fake.asked == [body["pid"]]
    assert resp.headers["X-Coverage"] == "unavailable"
    assert body["coverageStatus"] == "no_token" and body["mainInscl"] is None


async def test_a_keyring_failure_reads_as_no_token(aiohttp_client: Any) -> None:
    fake = Coverage(KeyringUnavailable("locked"), {"mainInscl": "x"})
    agent = await start_agent(aiohttp_client, coverage=fake)
    resp = await agent.client.get("/api/smartcard/read")
    body = await resp.json()
    assert resp.status == 200 and resp.headers["X-Coverage"] == "unavailable"
    assert body["coverageStatus"] == "keyring_unavailable" and fake.asked == []
    assert await agent.get_json("/api/preference") == {
        "defaultTerminal": DEMO_READER, "token": "", "tokenConfigured": False}


async def test_async_token_state(aiohttp_client: Any) -> None:
    class Async:
        async def token_configured(self) -> bool:
            return True

    agent = await start_agent(aiohttp_client, coverage=Async())
    assert (await agent.get_json("/api/preference"))["tokenConfigured"] is True


async def test_preference_names_the_reader_chosen_without_a_default(aiohttp_client: Any) -> None:
    agent = await start_agent(aiohttp_client, readers=())
    assert await agent.get_json("/api/preference") == {
        "defaultTerminal": "", "token": "", "tokenConfigured": False}


# -- added with the second mutation run: the token state NHSO's keyring really gives, the
# "no rights" answer, the probe route, the LAN listener's routes, a configured default ----

async def test_a_keyring_that_cannot_be_asked_is_keyring_unavailable(aiohttp_client: Any) -> None:
    # The token store answers None (not an exception) when the keyring cannot be asked.
    fake = Coverage(None, {"mainInscl": "x"})

    async def unknown() -> None:
        return None

    fake.token_configured = unknown  # type: ignore[assignment,method-assign]  # the store's None
    agent = await start_agent(aiohttp_client, coverage=fake)
    resp = await agent.client.get("/api/smartcard/read")
    body = await resp.json()
    assert resp.headers["X-Coverage"] == "unavailable" and fake.asked == []
    assert body["coverageStatus"] == "keyring_unavailable" and body["mainInscl"] is None


async def test_an_answer_without_main_coverage_is_no_rights(aiohttp_client: Any) -> None:
    fake = Coverage(True, {"mainInscl": None, "subInscl": "x", "claimTypes": "PG0060001"})
    agent = await start_agent(aiohttp_client, coverage=fake)
    resp = await agent.client.get("/api/smartcard/read")
    body = await resp.json()
    # NHSO answered: the header says the lookup worked, the status that there is no right.
    assert resp.headers["X-Coverage"] == "ok" and body["coverageStatus"] == "no_rights"
    assert body["subInscl"] == "x" and body["claimTypes"] == []     # not a list: none


async def test_coverage_keys_are_a_fresh_copy_each_time() -> None:
    from aiohttp import web

    from agent.api import compat

    first, status = await compat.coverage_of(web.Application(), "1101700203361")
    assert status == "nhso_off" and first["claimTypes"] == []
    first["claimTypes"].append("PG0060001")             # a caller changing its answer
    second, _ = await compat.coverage_of(web.Application(), "1101700203361")
    assert second["claimTypes"] == [] and compat.COVERAGE_KEYS["claimTypes"] == []


PID = "1101700203361"       # a valid check digit (docs/reference.md: digit 13)


async def test_probe_answers_the_coverage_part_for_a_pid(aiohttp_client: Any) -> None:
    fake = Coverage(True, {"mainInscl": "(UCS) x", "claimTypes": ["PG0060001"]})
    agent = await start_agent(aiohttp_client, coverage=fake)
    body = await agent.get_json(f"/api/smartcard/probe/{PID}")
    assert fake.asked == [PID]
    assert body["pid"] == PID and body["mainInscl"] == "(UCS) x"
    assert body["claimTypes"] == ["PG0060001"] and body["coverageStatus"] == "ok"
    assert body["hospMain"] is None and "T" in body["checkDate"]
    assert set(body) == {"pid", "coverageStatus", "checkDate", "mainInscl", "subInscl",
                         "hospMain", "hospSub", "hospMainOp", "paidModel", "startDateTime",
                         "expireDateTime", "claimTypes"}
    dt.datetime.fromisoformat(body["checkDate"])       # local time, no zone


@pytest.mark.parametrize("pid", ["1101700203365", "110170020336", "11017002033610",
                                 "1101700203x61"])
async def test_probe_refuses_a_pid_that_is_not_a_citizen_id(aiohttp_client: Any,
                                                            pid: str) -> None:
    fake = Coverage(True, {"mainInscl": "x"})
    agent = await start_agent(aiohttp_client, coverage=fake)
    body = await agent.get_json(f"/api/smartcard/probe/{pid}", 400)
    assert body["code"] == "bad_request" and fake.asked == []
    assert body["detail"] == "pid must be a 13-digit citizen id with a valid check digit"
    assert body["path"] == f"/api/smartcard/probe/{pid}"


async def test_probe_without_the_nhso_room_and_with_a_failing_lookup(aiohttp_client: Any) -> None:
    agent = await start_agent(aiohttp_client)
    body = await agent.get_json(f"/api/smartcard/probe/{PID}")
    assert body["coverageStatus"] == "nhso_off" and body["mainInscl"] is None

    class Failing(Coverage):
        async def coverage_for(self, pid: str) -> Any:
            raise KeyringUnavailable("locked")

    agent = await start_agent(aiohttp_client, coverage=Failing(True))
    body = await agent.get_json(f"/api/smartcard/probe/{PID}", 500)
    assert body["code"] == "keyring_unavailable" and body["detail"] == "locked"
    assert body["path"] == f"/api/smartcard/probe/{PID}"


@pytest.mark.parametrize("photo", [False, True])
async def test_lan_card_routes_leave_the_photo_out_unless_allowed(aiohttp_client: Any,
                                                                  photo: bool) -> None:
    from aiohttp import web

    from agent.api.compat import card_routes
    from agent.api.keys import CARD_SERVICE

    agent = await start_agent(aiohttp_client)
    lan = web.Application()
    lan[CARD_SERVICE] = agent.service
    routes = card_routes(photo=photo)
    assert [path for path, _ in routes] == ["/api/smartcard/terminals", "/api/smartcard/read",
                                            "/api/smartcard/read-card-only"]
    for path, handler in routes:
        lan.router.add_get(path, handler)
    client = await aiohttp_client(lan)
    terminals = await client.get("/api/smartcard/terminals")
    assert await terminals.json() == [{"terminalName": DEMO_READER, "isPresent": True}]
    for path in ("/api/smartcard/read", "/api/smartcard/read-card-only"):
        resp = await client.get(path + "?readImageFlag=true")
        body = await resp.json()
        assert resp.status == 200 and body["pid"] == demo_profile(0).text.citizen_id
        assert ("image" in body) is photo
        # /read carries the coverage keys (no NHSO room here), /read-card-only does not.
        assert ("coverageStatus" in body) is (path == "/api/smartcard/read")
        if path == "/api/smartcard/read":
            assert body["coverageStatus"] == "nhso_off"
            assert resp.headers["X-Coverage"] == "unavailable"


async def test_preference_names_the_configured_default_even_when_unplugged(
        aiohttp_client: Any) -> None:
    agent = await start_agent(aiohttp_client, default_terminal="Reader at the desk")
    assert (await agent.get_json("/api/preference"))["defaultTerminal"] == "Reader at the desk"


def test_age_of_a_baby_born_this_month() -> None:
    from agent.api import compat
    assert compat.thai_age(CardDate("25680301"), dt.date(2025, 3, 5)) == "0 ปี 0 เดือน 4 วัน"
    assert compat.thai_age(CardDate("25680300"), dt.date(2025, 3, 5)) == "0 ปี 0 เดือน"
