"""Visits waiting for the patient's card: registered by the HIS, listed, cancelled,
expired at the end of the Bangkok day, and confirmed by the card into exactly one claim.

The whole agent (guard, card core with the demo reader, NHSO room) against the contract
server app; the browser flow of the kiosk page is in test_browser_kiosk.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

from agent.assembly import NhsoParts
from agent.card.demo import demo_profile
from agent.events import EVENT_TABLE
from agent.nhso.routes import NHSO_SERVICE
from agent.nhso.settings import load_settings
from agent.nhso.token import TokenStore
from agent.nhso.validation import BANGKOK
from testrig.nhso_server import STATE, make_app
from testrig.nhso_support import (
    HCODE,
    RECORDER_PID,
    SOURCE_ID,
    TOKEN,
    MemoryKeyring,
    claim_body,
)
from tests.api_support import ALLOWED, Agent, start_agent

PATIENT = demo_profile(0).text.citizen_id          # the demo card in the reader
OTHER_PATIENT = demo_profile(1).text.citizen_id
READER_ONLY = "https://reader-only.example.test"


@pytest.fixture
async def nhso(aiohttp_server: Any) -> Any:
    return await aiohttp_server(make_app({TOKEN: HCODE}))


async def make_agent(aiohttp_client: Any, tmp_path: Path, nhso: Any, **config: Any) -> Agent:
    settings = load_settings(
        config_dir=tmp_path / "config", data_dir=tmp_path / "data", env={},
        site_path=tmp_path / "no-site.json", base_url=str(nhso.make_url("")).rstrip("/"),
        hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID, request_timeout=5.0,
        retry_base=0.01, retry_max=0.1)
    keyring = MemoryKeyring()
    keyring.set_password("thaicard-agent", "nhso-token", TOKEN)
    config.setdefault("allowed_origins", (ALLOWED, READER_ONLY))
    config.setdefault("origin_scopes", {READER_ONLY: ("card", "events"),
                                        ALLOWED: ("card", "events", "claims")})
    agent = await start_agent(aiohttp_client, nhso=NhsoParts(settings, TokenStore(keyring)),
                              **config)
    await agent.ready()
    return agent


def visit_body(n: int, pid: str = PATIENT, **changes: Any) -> dict[str, Any]:
    return {**claim_body(n, pid=pid), "label": f"ห้องตรวจ {n}, 09:40", **changes}


def collect(agent: Agent) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    agent.service.events.add_listener(lambda ev: seen.append((ev.type, ev.payload)))
    return seen


async def post(agent: Agent, path: str, body: Any = None, status: int = 200,
               **headers: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {})
    resp = await agent.client.post(path, data=data,
                                   headers={"Content-Type": "application/json", **headers})
    out = await resp.json()
    assert resp.status == status, (resp.status, out)
    return out


async def test_register_list_cancel(aiohttp_client, tmp_path, nhso):
    agent = await make_agent(aiohttp_client, tmp_path, nhso)
    events = collect(agent)
    body = visit_body(1)
    first = await post(agent, "/v1/visits", body, 201)
    assert first["status"] == "waiting" and first["label"] == "ห้องตรวจ 1, 09:40"
    assert first["duplicate"] is False and first["claimId"] is None
    # The same visit again (a HIS retrying) is the same visit, not a second one.
    again = await post(agent, "/v1/visits", body, 200)
    assert again["id"] == first["id"] and again["duplicate"] is True
    conflict = await post(agent, "/v1/visits", {**body, "label": "ห้องตรวจ 9"}, 409)
    assert conflict["code"] == "visit_conflict"
    second = await post(agent, "/v1/visits", visit_body(2), 201)
    await post(agent, "/v1/visits", visit_body(3, pid=OTHER_PATIENT), 201)

    mine = await agent.get_json(f"/v1/visits?pid={PATIENT}&date=today")
    assert [v["id"] for v in mine["visits"]] == [first["id"], second["id"]]
    assert mine["count"] == 2
    assert (await agent.get_json("/v1/visits?date=today&status=waiting"))["count"] == 3
    cancelled = await agent.client.delete(f"/v1/visits/{second['id']}")
    assert cancelled.status == 200 and (await cancelled.json())["status"] == "cancelled"
    waiting = await agent.get_json(f"/v1/visits?pid={PATIENT}&status=waiting")
    assert [v["id"] for v in waiting["visits"]] == [first["id"]]
    closed = await post(agent, f"/v1/visits/{second['id']}/confirm", {}, 409)
    assert closed["code"] == "visit_closed"
    assert (await agent.get_json("/v1/visits/nope", status=404))["code"] == "visit_not_found"
    registered = [p for t, p in events if t == "visit.registered"]
    assert len(registered) == 3
    # Events go to every events subscriber: never the citizen id, never the claim body.
    assert all(set(p) == set(EVENT_TABLE["visit.registered"].payload) for p in registered)
    assert PATIENT not in json.dumps(events, ensure_ascii=False)


async def test_register_checks_the_claim_and_the_label(aiohttp_client, tmp_path, nhso):
    agent = await make_agent(aiohttp_client, tmp_path, nhso)
    body = visit_body(1, label="x" * 81, pid="1234567890123")
    del body["visitNumber"]
    out = await post(agent, "/v1/visits", body, 400)
    assert {e["field"] for e in out["errors"]} == {"label", "pid", "visitNumber"}
    assert all(e["message_th"] for e in out["errors"])
    bad_query = await agent.get_json("/v1/visits?pid=123", status=400)
    assert bad_query["errors"][0]["field"] == "pid"
    assert (await agent.get_json("/v1/visits?who=me", status=400))["errors"][0]["field"] == "who"


async def test_the_card_confirms_once_and_the_code_is_answered(aiohttp_client, tmp_path,
                                                               nhso):
    agent = await make_agent(aiohttp_client, tmp_path, nhso)
    events = collect(agent)
    visit = await post(agent, "/v1/visits", visit_body(1), 201)
    out = await post(agent, f"/v1/visits/{visit['id']}/confirm?wait=20", {})
    issued = nhso.app[STATE].issued
    assert len(issued) == 1 and issued[0]["transactionId"] == visit["transactionId"]
    assert out["status"] == "sent" and out["claimCode"] == issued[0]["authenCode"]
    assert out["visit"]["status"] == "confirmed" and out["visit"]["claimId"] == out["claimId"]
    claim = await agent.get_json(f"/v1/claims/{out['claimId']}")
    assert claim["authenCode"] == out["claimCode"]
    assert claim["claim"]["transactionId"] == visit["transactionId"]
    # A second tap (or a retry after a lost answer) is the same claim, nothing sent again.
    again = await post(agent, f"/v1/visits/{visit['id']}/confirm", b"")
    assert again["claimId"] == out["claimId"] and again["claimCode"] == out["claimCode"]
    assert len(nhso.app[STATE].issued) == 1
    assert len((await agent.get_json("/v1/claims"))["claims"]) == 1
    confirmed = [p for t, p in events if t == "visit.confirmed"]
    assert confirmed == [{"id": visit["id"], "transactionId": visit["transactionId"],
                          "status": "confirmed", "label": visit["label"],
                          "serviceDate": visit["serviceDate"], "claimId": out["claimId"]}]


async def test_two_taps_at_once_make_one_claim(aiohttp_client, tmp_path, nhso):
    agent = await make_agent(aiohttp_client, tmp_path, nhso)
    visit = await post(agent, "/v1/visits", visit_body(1), 201)
    outs = await asyncio.gather(*(post(agent, f"/v1/visits/{visit['id']}/confirm", {})
                                  for _ in range(4)))
    assert len({o["claimId"] for o in outs}) == 1
    assert len((await agent.get_json("/v1/claims"))["claims"]) == 1


async def test_confirm_needs_the_patients_own_card(aiohttp_client, tmp_path, nhso):
    agent = await make_agent(aiohttp_client, tmp_path, nhso)
    visit = await post(agent, "/v1/visits", visit_body(1, pid=OTHER_PATIENT), 201)
    mismatch = await post(agent, f"/v1/visits/{visit['id']}/confirm", {}, 409)
    assert mismatch["code"] == "visit_card_mismatch" and mismatch["message_th"]
    await agent.remove()
    no_card = await post(agent, f"/v1/visits/{visit['id']}/confirm", {}, 500)
    assert no_card["code"] == "no_card"
    assert (await agent.get_json("/v1/claims"))["claims"] == []
    assert (await agent.get_json(f"/v1/visits/{visit['id']}"))["status"] == "waiting"
    await agent.insert(1)
    out = await post(agent, f"/v1/visits/{visit['id']}/confirm", {})
    assert out["visit"]["status"] == "confirmed"


async def test_nhso_refusing_is_answered_with_the_reason(aiohttp_client, tmp_path, nhso):
    agent = await make_agent(aiohttp_client, tmp_path, nhso)
    visit = await post(agent, "/v1/visits", visit_body(1), 201)
    await nhso_control(nhso, "/_control/reject", {"transactionIds": [visit["transactionId"]]})
    out = await post(agent, f"/v1/visits/{visit['id']}/confirm?wait=20", {})
    assert out["status"] == "failed" and out["claimCode"] is None
    assert out["error"]["code"] and out["visit"]["status"] == "confirmed"


async def nhso_control(nhso: Any, path: str, body: Any) -> None:
    async with __import__("aiohttp").ClientSession() as session:
        async with session.post(nhso.make_url(path), json=body) as resp:
            assert resp.status == 200, await resp.text()


async def test_scopes_of_the_visit_routes(aiohttp_client, tmp_path, nhso):
    agent = await make_agent(aiohttp_client, tmp_path, nhso)
    page = {"Origin": ALLOWED}
    visit = await post(agent, "/v1/visits", visit_body(1), 201, **page)
    assert (await agent.get_json(f"/v1/visits?pid={PATIENT}", headers=page))["count"] == 1
    for origin in (READER_ONLY, "https://evil.example.test"):
        resp = await agent.client.get(f"/v1/visits?pid={PATIENT}", headers={"Origin": origin})
        assert resp.status == 403, origin
        resp = await agent.client.post(f"/v1/visits/{visit['id']}/confirm", data="{}",
                                       headers={"Origin": origin,
                                                "Content-Type": "application/json"})
        assert resp.status == 403, origin
    assert (await agent.get_json(f"/v1/visits/{visit['id']}"))["status"] == "waiting"


async def test_visits_expire_at_the_end_of_the_bangkok_day(aiohttp_client, tmp_path, nhso,
                                                           monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")      # the machine's zone must not matter
    time.tzset()
    try:
        agent = await make_agent(aiohttp_client, tmp_path, nhso)
        events = collect(agent)
        desk = agent.app[NHSO_SERVICE].visits
        visit = await post(agent, "/v1/visits", visit_body(1), 201)
        day = dt.date.fromisoformat(visit["serviceDate"])
        midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), BANGKOK)
        desk.clock = lambda: midnight - dt.timedelta(seconds=1)
        await desk.sweep()
        assert (await agent.get_json(f"/v1/visits/{visit['id']}"))["status"] == "waiting"
        # After the due time the visit is flagged once: staff still have time.
        assert [p["id"] for t, p in events if t == "visit.due"] == [visit["id"]]
        await desk.sweep()
        assert len([t for t, _ in events if t == "visit.due"]) == 1
        desk.clock = lambda: midnight + dt.timedelta(seconds=1)
        await desk.sweep()
        assert (await agent.get_json(f"/v1/visits/{visit['id']}"))["status"] == "expired"
        assert [p["id"] for t, p in events if t == "visit.expired"] == [visit["id"]]
        closed = await post(agent, f"/v1/visits/{visit['id']}/confirm", {}, 409)
        assert closed["code"] == "visit_closed"
        assert (await agent.get_json("/v1/claims"))["claims"] == []
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


async def test_a_confirm_cut_short_is_finished_at_start(aiohttp_client, tmp_path, nhso):
    """The claim committed, the visit not (a crash between the two): the next start
    marks the visit confirmed with that claim, and no second claim is ever made."""
    agent = await make_agent(aiohttp_client, tmp_path, nhso)
    service = agent.app[NHSO_SERVICE]
    visit = await post(agent, "/v1/visits", visit_body(1), 201)
    stored = await service.visits.get(visit["id"])
    claim, _ = await service.claims.submit(stored.body)    # what confirm did before dying
    await service.visits.stop()
    events = collect(agent)
    await service.visits.start()
    shown = await agent.get_json(f"/v1/visits/{visit['id']}")
    assert shown["status"] == "confirmed" and shown["claimId"] == claim.id
    assert [p["claimId"] for t, p in events if t == "visit.confirmed"] == [claim.id]
    out = await post(agent, f"/v1/visits/{visit['id']}/confirm", {})
    assert out["claimId"] == claim.id
    assert len((await agent.get_json("/v1/claims"))["claims"]) == 1


async def test_visits_survive_a_restart(aiohttp_client, tmp_path, nhso):
    agent = await make_agent(aiohttp_client, tmp_path, nhso)
    visit = await post(agent, "/v1/visits", visit_body(1), 201)
    await agent.client.close()
    again = await make_agent(aiohttp_client, tmp_path, nhso)
    assert (await again.get_json(f"/v1/visits/{visit['id']}"))["status"] == "waiting"
