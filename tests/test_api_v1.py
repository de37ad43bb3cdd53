"""``/v1``: status, readers, every card field, the photo, demo control; one read per insertion."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import quote

from agent import __version__
from agent.assembly import build_app
from agent.card.demo import demo_profile
from agent.config import Config
from agent.readers.base import ReaderBackend
from agent.readers.demo import DEMO_READER, DemoBackend
from tests.api_support import SECOND, start_agent

READER = quote(DEMO_READER)


async def test_status(aiohttp_client):
    agent = await start_agent(aiohttp_client, readers=(DEMO_READER, SECOND))
    body = await agent.get_json("/v1/status")
    assert body["name"] == "thaicard-agent" and body["version"] == __version__
    assert body["backend"] == "demo" and body["pcsc"]["state"] == "available"
    assert [r["name"] for r in body["readers"]] == [DEMO_READER, SECOND]
    assert body["uptime_s"] >= 0
    assert body["nhso"] == {"available": False, "tokenConfigured": False, "token": None}
    assert body["config"]["allowedOrigins"] == ["https://his.example.test"]


async def test_readers(aiohttp_client):
    agent = await start_agent(aiohttp_client, readers=(DEMO_READER, SECOND))
    await agent.ready()
    readers = (await agent.get_json("/v1/readers"))["readers"]
    first, second = readers
    assert first["name"] == DEMO_READER and first["present"] and first["status"] == "ready"
    assert first["atr"] and first["photo"] is True
    assert second == {"name": SECOND, "present": False, "status": "empty", "atr": None,
                      "generation": None, "photo": False, "error": None}


async def test_card_all_fields(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    body = await agent.get_json(f"/v1/readers/{READER}/card")
    text = demo_profile(0).text
    card = body["card"]
    assert body["reader"] == DEMO_READER and body["status"] in ("reading", "ready")
    assert card["citizen_id"] == text.citizen_id and card["citizen_id_valid"] is True
    assert card["name_th"]["full"] == "นายทดสอบ ระบบอ่านบัตร"
    assert card["name_en"] == {"prefix": "Mr.", "first": "Demo", "middle": "",
                               "last": "Cardreader", "full": "Mr. Demo Cardreader"}
    assert card["birth_date"]["iso"] == "1987-01-15" and card["birth_date"]["raw"] == "25300115"
    assert card["expiry_date"]["iso"] == "2032-01-14"
    assert card["issue_date"]["precision"] == "day"
    assert card["gender"] == {"raw": "1", "en": "male", "th": "ชาย"}
    assert card["address"]["province"] == "นนทบุรี" and card["address"]["moo"] == "9"
    assert len(card["address"]["parts"]) == 8
    assert card["issuer"] == text.issuer
    assert card["number_under_photo"]["formatted"] == "1234-56-78901234"
    assert card["request_number"] == {"raw": "12345678901/00000001", "well_formed": True}
    assert card["card"]["atr"]
    assert card["read"]["apdus"] > 0 and card["read"]["text_ms"] >= 0
    assert card["photo"] is None or "base64" not in card["photo"]


async def test_card_with_photo_and_default_reader(aiohttp_client):
    agent = await start_agent(aiohttp_client, readers=(SECOND, DEMO_READER), insert=False)
    await agent.insert(0, DEMO_READER)
    body = await agent.get_json("/v1/card?photo=1")      # the reader with the card
    assert body["reader"] == DEMO_READER and body["status"] == "ready"
    photo = body["card"]["photo"]
    assert base64.b64decode(photo["base64"]) == demo_profile(0).photo
    assert photo["size"] == len(demo_profile(0).photo) and photo["format"] == "image/jpeg"


async def test_photo_endpoint(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    resp = await agent.client.get(f"/v1/readers/{READER}/photo")
    assert resp.status == 200 and resp.content_type == "image/jpeg"
    assert await resp.read() == demo_profile(0).photo


async def test_photo_turned_off(aiohttp_client):
    agent = await start_agent(aiohttp_client, read_photo=False)
    body = await agent.get_json(f"/v1/readers/{READER}/photo", 404)
    assert body["code"] == "photo_unavailable"
    card = await agent.get_json(f"/v1/readers/{READER}/card?photo=1")
    assert card["card"]["photo"] is None


async def test_unknown_reader_and_empty_reader(aiohttp_client):
    agent = await start_agent(aiohttp_client, readers=(DEMO_READER, SECOND))
    for path in ("/v1/readers/Nope/card", "/v1/readers/Nope/photo"):
        body = await agent.get_json(path, 404)
        assert body["code"] == "reader_not_found" and body["message"].startswith("No reader")
    body = await agent.get_json(f"/v1/readers/{quote(SECOND)}/card", 500)
    assert body["code"] == "no_card"


async def test_no_reader(aiohttp_client):
    agent = await start_agent(aiohttp_client, readers=())
    assert (await agent.get_json("/v1/card", 418))["code"] == "no_reader"
    assert (await agent.get_json("/v1/readers"))["readers"] == []


async def test_demo_insert_and_remove(aiohttp_client):
    agent = await start_agent(aiohttp_client, insert=False)
    assert (await agent.get_json("/v1/card", 500))["code"] == "no_card"
    resp = await agent.client.post("/v1/demo/card", json={"variant": 1})
    assert resp.status == 202 and (await resp.json())["reader"] == DEMO_READER
    card = await _eventually_card(agent)
    assert card["card"]["name_th"]["first"] == "ตัวอย่าง"
    resp = await agent.client.delete("/v1/demo/card")
    assert resp.status == 202
    # No stale card once the removal is seen.
    for _ in range(200):
        resp = await agent.client.get("/v1/card")
        if resp.status == 500:
            break
        await asyncio.sleep(0.02)
    assert (await resp.json())["code"] == "no_card"


async def _eventually_card(agent):
    for _ in range(200):
        resp = await agent.client.get("/v1/card")
        if resp.status == 200:
            return await resp.json()
        await asyncio.sleep(0.02)
    raise AssertionError("the demo card never showed up")


async def test_one_read_per_insertion_shared_by_concurrent_requests(aiohttp_client):
    # Slow enough that every request arrives while the one read is running.
    agent = await start_agent(aiohttp_client, insert=False, apdu_delay=0.01)
    await agent.insert(0, wait_for="card.inserted")
    paths = ["/v1/card?photo=1", "/api/smartcard/read?readImageFlag=true",
             "/api/smartcard/read-card-only", f"/v1/readers/{READER}/photo"] * 15
    resps = await asyncio.gather(*(agent.client.get(p) for p in paths))
    assert [r.status for r in resps] == [200] * len(paths)
    assert agent.service.reads == 1
    pids = set()
    for path, resp in zip(paths, resps):
        if path.startswith("/api"):
            pids.add((await resp.json())["pid"])
    assert pids == {demo_profile(0).text.citizen_id}


async def test_waiting_request_times_out(aiohttp_client):
    agent = await start_agent(aiohttp_client, insert=False, apdu_delay=0.2, read_timeout=1)
    await agent.insert(0, wait_for="card.inserted")
    v1 = await agent.get_json("/v1/card?photo=1", 504)
    assert v1["code"] == "read_timeout"
    compat = await agent.get_json("/api/smartcard/read?readImageFlag=true", 500)  # NHSO: 500
    assert compat["code"] == "read_timeout"
    agent.backend.remove(DEMO_READER)      # ends the slow read thread at its next command


async def test_removal_clears_the_cache_at_once(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    await agent.ready()
    assert (await agent.get_json("/v1/card"))["card"]["citizen_id"]
    await agent.remove()
    for path in ("/v1/card", "/api/smartcard/read", f"/v1/readers/{READER}/photo"):
        assert (await agent.get_json(path, 500))["code"] == "no_card"
    # A different card in the same reader is read anew: never the old one.
    await agent.insert(1)
    body = await agent.get_json("/api/smartcard/read-card-only")
    assert body["pid"] == demo_profile(1).text.citizen_id
    # read-card-only answers at the text; ``reads`` counts a read once its photo is in.
    await agent.ready()
    assert agent.service.reads == 2


class RealLikeBackend(ReaderBackend):
    """A backend that is not the demo one (as PC/SC is), over the demo reader's cards."""

    kind = "pcsc"

    def __init__(self) -> None:
        self.inner = DemoBackend()

    def snapshot(self):
        return self.inner.snapshot()

    def wait_for_change(self, known, timeout=None):
        return self.inner.wait_for_change(known, timeout)

    def cancel(self) -> None:
        self.inner.cancel()

    def connect(self, reader):
        return self.inner.connect(reader)

    def close(self) -> None:
        self.inner.close()


async def test_demo_control_only_in_demo_mode(aiohttp_client):
    app = build_app(Config(backend="pcsc"), backend=RealLikeBackend(), nhso=None)
    client = await aiohttp_client(app)
    for method, kw in (("POST", {"json": {"variant": 1}}), ("DELETE", {})):
        resp = await client.request(method, "/v1/demo/card", **kw)
        body = await resp.json()
        assert resp.status == 404 and body["code"] == "not_found", body
    resp = await client.get("/v1/card")
    assert resp.status == 200                          # the card is still there


async def test_opt_in_applets_by_query_flags(aiohttp_client):
    """nhso=1 / laser=1 read the opt-in applets once per insertion; each caller sees what
    it asked for; a card without them says so beside the card, never as a failed read."""
    from agent.card.encode import encode_card, encode_nhso
    from agent.card.simulator import SimulatedCard
    from agent.card.values import CardDate, NhsoCoverage

    cov = NhsoCoverage("UCS", "89", "10699", "10699", "1", CardDate("25660101"),
                       CardDate("25700101"), CardDate("25660101"), "0")
    agent = await start_agent(aiohttp_client, insert=False)
    card = SimulatedCard(encode_card(demo_profile(0)), nhso_image=encode_nhso(cov),
                         laser_answer=bytes(7) + b"ME0123456789\0\0\0\0")
    await agent._change(lambda: agent.backend.insert(DEMO_READER, card), "card.photo",
                        DEMO_READER)
    plain = (await agent.get_json(f"/v1/readers/{READER}/card"))["card"]
    assert "nhso_applet" not in plain and "laser_id" not in plain
    before = card.apdus
    both = (await agent.get_json(f"/v1/readers/{READER}/card?nhso=1&laser=true"))["card"]
    assert both["nhso_applet"]["main_inscl"] == "UCS"
    assert both["laser_id"] == "ME0123456789" and both["laser_id_command"] == "80 00 00 00"
    used = card.apdus - before
    again = (await agent.get_json("/v1/card?laser=1"))["card"]
    assert again["laser_id"] == "ME0123456789" and "nhso_applet" not in again
    assert card.apdus - before == used                  # cached for this insertion
    assert "nhso_applet" not in (await agent.get_json("/v1/card"))["card"]

    await agent.insert(1)                                 # the demo card: neither applet
    bare = (await agent.get_json("/v1/card?nhso=1&laser=1"))["card"]
    assert bare["nhso_applet"] is None
    assert bare["laser_error"]["code"] == "laser_unavailable" and "laser_id" not in bare
    await agent.get_json("/v1/card?nhso=maybe", status=400)
